/*
 * seccomp.c - the worker's system-call filter. A worker reaches files only
 * through the broker (fd 4) and talks only to its supervisor (fd 3); after
 * its lock-down nothing it runs has a reason to open a file, make a
 * socket, start a program, signal another process, trace one, or change
 * the file system. If task code escapes the Lua sandbox, this filter keeps
 * those doors shut: the calls fail with EPERM. Foreign ABIs (x32, i386
 * entry points) kill the process. A deny-list keeps LuaJIT, SQLite and
 * glibc working without enumerating what they need. Relies on Linux
 * seccomp-bpf; x86-64 and aarch64.
 */
#include "weir/seccomp.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#if defined(__x86_64__)
#define WEIR_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define WEIR_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

#define DENY(nr) \
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), \
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA))

/* sysno with (argument argi & MSG_FASTOPEN) != 0 fails with EPERM; reloads nr after. */
#define FASTOPEN(sysno, argi) \
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (sysno), 0, 4), \
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, \
             offsetof(struct seccomp_data, args[argi])), \
    BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, MSG_FASTOPEN, 0, 1), \
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)), \
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))

/*
 * setsockopt at level IPPROTO_IPV6 (routing and destination option headers
 * would steer a connected socket's packets to another host) and
 * SO_BINDTODEVICE fail with EPERM. libpq and hiredis set only SOL_SOCKET
 * keepalive and IPPROTO_TCP options. Reloads nr after.
 */
#define SETSOCKOPT_RULES \
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_setsockopt, 0, 7), \
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])), \
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_IPV6, 3, 0), \
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SOL_SOCKET, 0, 3), \
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])), \
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SO_BINDTODEVICE, 0, 1), \
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)), \
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))

int weir_seccomp_install(void)
{
#ifdef WEIR_AUDIT_ARCH
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                 offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, WEIR_AUDIT_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                 offsetof(struct seccomp_data, nr)),
#if defined(__x86_64__)
        /* x32 system calls carry bit 30: refuse that ABI outright */
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        DENY(__NR_open), DENY(__NR_creat), DENY(__NR_fork), DENY(__NR_vfork),
        DENY(__NR_unlink), DENY(__NR_rename), DENY(__NR_mkdir),
        DENY(__NR_rmdir), DENY(__NR_link), DENY(__NR_symlink),
        DENY(__NR_chmod), DENY(__NR_chown), DENY(__NR_lchown),
        DENY(__NR_mknod),
#endif
        /* files and the file system: only through the broker */
        DENY(__NR_openat), DENY(__NR_openat2), DENY(__NR_open_by_handle_at),
        DENY(__NR_name_to_handle_at), DENY(__NR_unlinkat),
        DENY(__NR_renameat), DENY(__NR_renameat2), DENY(__NR_mkdirat),
        DENY(__NR_linkat), DENY(__NR_symlinkat), DENY(__NR_fchmodat),
        DENY(__NR_fchownat), DENY(__NR_truncate), DENY(__NR_mknodat),
        DENY(__NR_chdir), DENY(__NR_chroot), DENY(__NR_mount),
        DENY(__NR_umount2), DENY(__NR_pivot_root), DENY(__NR_swapon),
        DENY(__NR_swapoff), DENY(__NR_acct),
        /* processes and programs */
        DENY(__NR_execve), DENY(__NR_execveat), DENY(__NR_clone),
        DENY(__NR_clone3), DENY(__NR_kill), DENY(__NR_tkill),
        DENY(__NR_ptrace), DENY(__NR_process_vm_readv),
        DENY(__NR_process_vm_writev), DENY(__NR_setns), DENY(__NR_unshare),
        DENY(__NR_prctl), DENY(__NR_personality),
        /* TCP Fast Open would connect without connect(): refuse sendto,
         * sendmsg and sendmmsg with MSG_FASTOPEN (flags: arg 3, 2, 3) */
        FASTOPEN(__NR_sendto, 3), FASTOPEN(__NR_sendmsg, 2),
        FASTOPEN(__NR_sendmmsg, 3),
        SETSOCKOPT_RULES,
        /* the network: a worker talks through fds 3 and 4; TCP sockets
         * come from the supervisor, connected by it (net.h) */
        DENY(__NR_socket), DENY(__NR_socketpair), DENY(__NR_connect),
        DENY(__NR_bind), DENY(__NR_listen), DENY(__NR_accept),
        DENY(__NR_accept4),
        /* kernel surfaces with a history */
        DENY(__NR_ioctl), DENY(__NR_io_uring_setup),
        DENY(__NR_io_uring_enter), DENY(__NR_io_uring_register),
        DENY(__NR_bpf), DENY(__NR_perf_event_open), DENY(__NR_userfaultfd),
        DENY(__NR_keyctl), DENY(__NR_add_key), DENY(__NR_request_key),
        DENY(__NR_init_module), DENY(__NR_finit_module),
        DENY(__NR_delete_module), DENY(__NR_kexec_load), DENY(__NR_reboot),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {
        .len = (unsigned short)(sizeof filter / sizeof filter[0]),
        .filter = filter,
    };

    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) == 0
               ? 0 : -1;
#else
    errno = ENOSYS;
    return -1;
#endif
}
