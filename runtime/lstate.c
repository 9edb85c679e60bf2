/*
 * lstate.c - Lua state creation. Trusted states get the whole standard
 * library plus a package searcher over the embedded bytecode; attempt
 * states are built for speed (a few libraries opened, modules loaded on
 * first require) and charge every allocation to a counting allocator, which
 * is what enforces a task's memory cap. Relies on LuaJIT in GC64 mode, where
 * lua_newstate accepts a custom allocator.
 */
#include "weir/lstate.h"
#include "weir/clock.h"
#include "weir/connectors.h"
#include "weir/edit.h"
#include "weir/embed.h"
#include "weir/exec.h"
#include "weir/json.h"
#include "weir/numfmt.h"
#include "weir/ser.h"
#include "weir/yaml.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>
#include <time.h>

const weir_embedded *weir_embed_find(const char *name)
{
    const weir_embedded *e;

    for (e = weir_embedded_table; e->name != NULL; e++)
        if (strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

int weir_state_load_embedded(lua_State *L, const char *name)
{
    const weir_embedded *e = weir_embed_find(name);
    char chunk[256];

    if (e == NULL || e->kind != 0) {
        lua_pushfstring(L, "module '%s' not found", name);
        return LUA_ERRFILE;
    }
    snprintf(chunk, sizeof chunk, "=%s", name);
    return luaL_loadbuffer(L, (const char *)e->data, e->len, chunk);
}

/* LuaJIT's type tag of cdata (lj_obj.h; lua.h does not name it). */
#define WEIR_LUA_TCDATA 10

void *weir_lua_cdata_ptr(lua_State *L, int idx, const char *what)
{
    void *const *pp;

    if (lua_type(L, idx) != WEIR_LUA_TCDATA)
        luaL_argerror(L, idx, lua_pushfstring(L, "%s expected", what));
    /* lua_topointer gives the address of a cdata's value: the pointer */
    pp = lua_topointer(L, idx);
    if (pp == NULL || *pp == NULL)
        luaL_argerror(L, idx, lua_pushfstring(L, "%s is NULL", what));
    return *pp;
}

/* weir._native.resource(name) -> string | nil: an embedded raw file. */
static int native_resource(lua_State *L)
{
    const weir_embedded *e = weir_embed_find(luaL_checkstring(L, 1));

    if (e == NULL || e->kind != 1)
        return 0;
    lua_pushlstring(L, (const char *)e->data, e->len);
    return 1;
}

/* weir._native.memory() -> used, peak, cap of this attempt state (bytes)
 * and whether the cap refused an allocation; nothing in a trusted state. */
static int native_memory(lua_State *L)
{
    weir_alloc_acc *acc;

    lua_getfield(L, LUA_REGISTRYINDEX, "weir.acc");
    acc = lua_touserdata(L, -1);
    if (acc == NULL)
        return 0;
    lua_pushnumber(L, (lua_Number)acc->used);
    lua_pushnumber(L, (lua_Number)acc->peak);
    lua_pushnumber(L, (lua_Number)acc->cap);
    lua_pushboolean(L, acc->exceeded);
    return 4;
}

/* weir._native.now() -> wall clock ms, monotonic ms. */
static int native_now(lua_State *L)
{
    lua_pushnumber(L, weir_clock_wall_ms());
    lua_pushnumber(L, weir_clock_mono_ms());
    return 2;
}

/* weir._native.num_format(x) -> the shortest text that reads back as x
 * (numfmt.h), or nil for NaN and infinities. */
static int native_num_format(lua_State *L)
{
    char buf[WEIR_NUMFMT_MAX];
    size_t n = weir_fmt_double(buf, luaL_checknumber(L, 1));

    if (n == 0)
        lua_pushnil(L);
    else
        lua_pushlstring(L, buf, n);
    return 1;
}

/* weir._native.string_dump() -> string.dump, even where the string library
 * no longer has it (attempt states). */
static int native_string_dump(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "weir.string_dump");
    if (lua_isnil(L, -1)) {
        lua_getglobal(L, "string");
        lua_getfield(L, -1, "dump");
    }
    return 1;
}

static int progress_fd = -1;

void weir_state_progress_fd(int fd)
{
    progress_fd = fd;
}

/* weir._native.progress(payload) -> boolean: one WEIR_FRAME_PROGRESS frame
 * on the worker's job socket (the supervisor reads it as an event while
 * the attempt goes on); false outside a worker or when the write fails. */
static int native_progress(lua_State *L)
{
    size_t len, off = 0, total;
    const char *data = luaL_checklstring(L, 1, &len);
    char hdr[WEIR_FRAME_HDR];
    uint32_t l = (uint32_t)len, t = WEIR_FRAME_PROGRESS;
    uint64_t z = 0;

    if (progress_fd < 0 || len > 65536) {
        lua_pushboolean(L, 0);
        return 1;
    }
    memcpy(hdr, &l, 4);
    memcpy(hdr + 4, &t, 4);
    memcpy(hdr + 8, &z, 8);
    total = sizeof hdr + len;
    while (off < total) {
        struct iovec iov[2];
        size_t d = off > sizeof hdr ? off - sizeof hdr : 0;
        int n = 0;
        ssize_t k;

        if (off < sizeof hdr) {
            iov[n].iov_base = hdr + off;
            iov[n++].iov_len = sizeof hdr - off;
        }
        iov[n].iov_base = (char *)data + d;
        iov[n++].iov_len = len - d;
        k = writev(progress_fd, iov, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            /* a frame cut short would break the protocol: never resume */
            progress_fd = -1;
            lua_pushboolean(L, 0);
            return 1;
        }
        off += (size_t)k;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static const luaL_Reg native_fns[] = {
    { "progress", native_progress },
    { "string_dump", native_string_dump },
    { "now", native_now },
    { "num_format", native_num_format },
    { "json_encode", weir_json_native_encode },
    { "json_decode", weir_json_native_decode },
    { "memory", native_memory },
    { "yaml_decode", weir_yaml_decode },
    { "resource", native_resource },
    { "ser_encode", weir_ser_encode },
    { "ser_decode", weir_ser_decode },
    { "ser_encode_ud", weir_ser_encode_ud },
    { "ser_decode_ptr", weir_ser_decode_ptr },
    { NULL, NULL },
};

static int open_native(lua_State *L)
{
    lua_createtable(L, 0, 32);
    for (const luaL_Reg *r = native_fns; r->name != NULL; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, -2, r->name);
    }
    /* the one NULL (ctx.NULL, json.null, weir.db.NULL): SQL NULL in rows
     * and JSON null (json.null), the value the C connectors push */
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "NULL");
    /* line editing (edit.h), weir repl's */
    lua_newtable(L);
    luaL_register(L, NULL, weir_edit_natives);
    lua_setfield(L, -2, "edit");
    /* each connector's natives (connectors.h), in weir._native itself or
     * in the subtable its description names */
    for (const weir_connector_desc *const *d = weir_connectors; *d; d++) {
        if ((*d)->natives == NULL)
            continue;
        if ((*d)->table != NULL) {
            lua_getfield(L, -1, (*d)->table);
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                lua_newtable(L);
                lua_pushvalue(L, -1);
                lua_setfield(L, -3, (*d)->table);
            }
        }
        luaL_register(L, NULL, (*d)->natives);
        if ((*d)->table != NULL)
            lua_pop(L, 1);
    }
    return 1;
}

/* package.loaders entry: the embedded library. */
static int searcher_embedded(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);

    if (strcmp(name, "weir._native") == 0) {
        lua_pushcfunction(L, open_native);
        return 1;
    }
    if (weir_embed_find(name) == NULL) {
        lua_pushfstring(L, "\n\tno embedded module '%s'", name);
        return 1;
    }
    if (weir_state_load_embedded(L, name) != 0)
        return lua_error(L);
    return 1;
}

lua_State *weir_state_new_trusted(void)
{
    lua_State *L = luaL_newstate();

    if (L == NULL)
        return NULL;
    luaL_openlibs(L);
    /* insert the embedded searcher right after the preload searcher */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaders");
    for (int i = (int)lua_objlen(L, -1); i >= 2; i--) {
        lua_rawgeti(L, -1, i);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushcfunction(L, searcher_embedded);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 2);
    return L;
}

/*
 * The attempt arena: one region per process, reused by one attempt state
 * at a time. Small blocks (up to ARENA_SMALL bytes) come from free lists
 * per 16-byte size class, refilled by a pointer bump; Lua tells the size
 * of every block it frees, so no header is needed. A data task that makes
 * and drops millions of small rows thus recycles the same memory instead
 * of going through malloc and free for each. Larger blocks are bumped
 * while the region is below ARENA_KEEP (the state's start-up: modules,
 * prototypes) and left until the state closes; later ones, and everything
 * once the region is full, go to malloc. The region is reserved (MAP_NORESERVE) and only
 * touched pages are resident; when the state is closed the region is
 * reset and pages beyond the first ARENA_KEEP are returned to the kernel.
 * The memory cap counts live bytes either way.
 */
#define ARENA_SIZE ((size_t)256 << 20)
#define ARENA_KEEP ((size_t)16 << 20)
#define ARENA_ALIGN 16
#define ARENA_SMALL 1024

static char *arena_base;
static size_t arena_top, arena_high;
static int arena_busy;
static int arena_spilled; /* the arena's state has a block from malloc */
static void *arena_lists[ARENA_SMALL / ARENA_ALIGN + 1];

static size_t round_up(size_t n)
{
    return (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
}

static int in_arena(const void *p)
{
    return arena_base != NULL && (const char *)p >= arena_base &&
           (const char *)p < arena_base + ARENA_SIZE;
}

static void *arena_alloc(size_t n)
{
    size_t r = round_up(n);
    void *p;

    if (r <= ARENA_SMALL && arena_lists[r / ARENA_ALIGN] != NULL) {
        p = arena_lists[r / ARENA_ALIGN];
        memcpy(&arena_lists[r / ARENA_ALIGN], p, sizeof(void *));
        return p;
    }
    /* large blocks only in the first ARENA_KEEP bytes (a state's own
     * start-up): later ones go to malloc, which returns them */
    if (arena_top + r > (r <= ARENA_SMALL ? ARENA_SIZE : ARENA_KEEP))
        return NULL;
    p = arena_base + arena_top;
    arena_top += r;
    if (arena_top > arena_high)
        arena_high = arena_top;
    return p;
}

/* Give a block of n bytes back: small ones to their size class. */
static void arena_free(void *p, size_t n)
{
    size_t r = round_up(n);

    if (r == 0 || r > ARENA_SMALL)
        return;
    memcpy(p, &arena_lists[r / ARENA_ALIGN], sizeof(void *));
    arena_lists[r / ARENA_ALIGN] = p;
}

static void arena_reset(void)
{
    memset(arena_lists, 0, sizeof(arena_lists));
    arena_top = 0;
    if (arena_high > ARENA_KEEP)
        (void)madvise(arena_base + ARENA_KEEP, arena_high - ARENA_KEEP,
                      MADV_DONTNEED);
    arena_high = 0;
}

static void *count_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    weir_alloc_acc *acc = ud;
    size_t old = ptr ? osize : 0;
    void *p = NULL;

    if (nsize == 0) {
        if (ptr != NULL) {
            if (in_arena(ptr))
                arena_free(ptr, old);
            else
                free(ptr);
        }
        acc->used -= old;
        if (acc->used == 0 && acc->arena) {
            arena_reset(); /* the state is closed: reuse the region */
            arena_busy = 0;
            acc->arena = 0;
        }
        return NULL;
    }
    if (acc->cap && nsize > old && acc->used - old + nsize > acc->cap) {
        acc->exceeded = 1;
        return NULL;
    }
    if (ptr != NULL && in_arena(ptr)) {
        char *end = (char *)ptr + round_up(old);
        if (nsize <= old || round_up(nsize) == round_up(old))
            p = ptr; /* shrink, or grow within the block */
        else if (end == arena_base + arena_top &&
                 (size_t)((char *)ptr - arena_base) + round_up(nsize) <=
                     ARENA_SIZE) {
            arena_top = (size_t)((char *)ptr - arena_base) + round_up(nsize);
            p = ptr; /* the last block grows in place */
        } else {
            p = acc->arena ? arena_alloc(nsize) : NULL;
            if (p == NULL)
                p = malloc(nsize);
            if (p != NULL) {
                memcpy(p, ptr, old);
                arena_free(ptr, old);
            }
        }
    } else if (ptr == NULL && acc->arena) {
        p = arena_alloc(nsize);
        if (p == NULL)
            p = malloc(nsize);
    } else {
        p = realloc(ptr, nsize);
    }
    if (p == NULL)
        return NULL;
    if (acc->arena && !in_arena(p))
        arena_spilled = 1;
    acc->used = acc->used - old + nsize;
    if (acc->used > acc->peak)
        acc->peak = acc->used;
    return p;
}

/* require(name) in an attempt state: the embedded library, ffi,
 * weir._native, and os and bit (not opened up front: most tasks never use
 * them); results cached in the registry. */
static int attempt_require(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);

    lua_getfield(L, LUA_REGISTRYINDEX, "weir.loaded");
    lua_getfield(L, -1, name);
    if (!lua_isnil(L, -1))
        return 1;
    lua_pop(L, 1);
    if (strcmp(name, "ffi") == 0)
        lua_pushcfunction(L, luaopen_ffi);
    else if (strcmp(name, "os") == 0) /* opened on first use: sandbox */
        lua_pushcfunction(L, luaopen_os);
    else if (strcmp(name, "bit") == 0)
        lua_pushcfunction(L, luaopen_bit);
    else if (strcmp(name, "weir._native") == 0)
        lua_pushcfunction(L, open_native);
    else if (weir_state_load_embedded(L, name) != 0)
        return lua_error(L);
    lua_pushstring(L, name);
    lua_call(L, 1, 1);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, name);
    return 1;
}

static void open_lib(lua_State *L, lua_CFunction f, const char *name)
{
    lua_pushcfunction(L, f);
    lua_pushstring(L, name);
    lua_call(L, 1, 0);
}

lua_State *weir_state_new_attempt(weir_alloc_acc *acc)
{
    lua_State *L;

    acc->arena = 0;
    if (!arena_busy) {
        if (arena_base == NULL) {
            void *m = mmap(NULL, ARENA_SIZE, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
                           0);
            arena_base = m == MAP_FAILED ? NULL : m;
        }
        if (arena_base != NULL) {
            arena_busy = 1;
            arena_reset();
            arena_spilled = 0;
            acc->arena = 1;
        }
    }
    L = lua_newstate(count_alloc, acc);
    if (L == NULL) {
        if (acc->arena) {
            arena_busy = 0;
            acc->arena = 0;
        }
        return NULL;
    }
    open_lib(L, luaopen_base, "");
    open_lib(L, luaopen_table, LUA_TABLIBNAME);
    open_lib(L, luaopen_string, LUA_STRLIBNAME);
    open_lib(L, luaopen_math, LUA_MATHLIBNAME);
    open_lib(L, luaopen_debug, LUA_DBLIBNAME);
    /* string.dump is reachable from any string through its shared
     * metatable ("").dump; keep it only for trusted code, in the registry
     * (weir._native.string_dump). */
    lua_getglobal(L, "string");
    lua_getfield(L, -1, "dump");
    lua_setfield(L, LUA_REGISTRYINDEX, "weir.string_dump");
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);
    lua_pushlightuserdata(L, acc);
    lua_setfield(L, LUA_REGISTRYINDEX, "weir.acc");
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "weir.loaded");
    lua_pushcfunction(L, attempt_require);
    lua_setglobal(L, "require");
    /* No collection while the trusted library sets the attempt up: what
     * it allocates lives until the state is closed, so collecting would be
     * pure cost (about a quarter of a no-op attempt). weir._attempt and
     * weir._define restart the collector before user code runs. */
    lua_gc(L, LUA_GCSTOP, 0);
    return L;
}

/*
 * Snapshots of a prepared attempt state (ADR 9). Every byte of a state
 * made by weir_state_new_attempt lives in the arena, at a fixed address,
 * as long as nothing spilled to malloc; its allocator's bookkeeping is the
 * arena's top and free lists plus acc. Copying those back therefore gives
 * a state identical, bit for bit, to the one saved: a fresh state that has
 * run no user code, for the price of a memcpy of some 70 KB instead of
 * building it again (about half of a no-op attempt).
 */
static char *snap_mem;
static size_t snap_top;
static void *snap_lists[ARENA_SMALL / ARENA_ALIGN + 1];
static weir_alloc_acc snap_acc, *snap_owner;
static lua_State *snap_L;

/* Modules whose C side keeps memory of its own behind the state (ffi's
 * declarations): freed at lua_close, so a restored copy would point at
 * freed memory. A state that loaded one is not saved. */
static const char *const snap_unsafe[] = { "ffi", NULL };

int weir_state_snapshot_save(lua_State *L, weir_alloc_acc *acc)
{
    char *m;

    if (!acc->arena || arena_spilled || !in_arena(L) || !arena_busy)
        return -1;
    lua_getfield(L, LUA_REGISTRYINDEX, "weir.loaded");
    for (int i = 0; snap_unsafe[i] != NULL && lua_istable(L, -1); i++) {
        lua_getfield(L, -1, snap_unsafe[i]);
        if (!lua_isnil(L, -1)) {
            lua_pop(L, 2);
            return -1;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    m = realloc(snap_mem, arena_top ? arena_top : 1);
    if (m == NULL)
        return -1;
    snap_mem = m;
    memcpy(snap_mem, arena_base, arena_top);
    snap_top = arena_top;
    memcpy(snap_lists, arena_lists, sizeof snap_lists);
    snap_acc = *acc;
    snap_owner = acc;
    snap_L = L;
    return 0;
}

lua_State *weir_state_snapshot_restore(weir_alloc_acc *acc)
{
    if (snap_mem == NULL || acc != snap_owner || arena_busy)
        return NULL;
    memcpy(arena_base, snap_mem, snap_top);
    arena_top = snap_top;
    if (arena_high < snap_top)
        arena_high = snap_top;
    memcpy(arena_lists, snap_lists, sizeof arena_lists);
    arena_spilled = 0;
    arena_busy = 1;
    *acc = snap_acc;
    return snap_L;
}

void weir_state_snapshot_drop(void)
{
    free(snap_mem);
    snap_mem = NULL;
    snap_owner = NULL;
    snap_L = NULL;
}
