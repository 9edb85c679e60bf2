/*
 * edit.c - line editing for weir repl over libedit (edit.h).
 */
#include "weir/edit.h"
#include "weir/buf.h"

#include <errno.h>
#include <histedit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static EditLine *el;
static History *hist;
static lua_State *cur_L;   /* the state inside edit.read */
static int complete_ref = LUA_NOREF;
static char prompt_text[256];
static int paste_on; /* the terminal understands bracketed paste */

static char *prompt_fn(EditLine *e)
{
    (void)e;
    return prompt_text;
}

/* Tab: ask the Lua completer; insert what it says, print its list. */
static unsigned char on_tab(EditLine *e, int ch)
{
    const LineInfo *li = el_line(e);
    lua_State *L = cur_L;
    const char *ins, *show;
    unsigned char rc = CC_REFRESH;

    (void)ch;
    if (L == NULL || complete_ref == LUA_NOREF)
        return CC_ERROR;
    lua_rawgeti(L, LUA_REGISTRYINDEX, complete_ref);
    lua_pushlstring(L, li->buffer, (size_t)(li->cursor - li->buffer));
    lua_pushlstring(L, li->buffer, (size_t)(li->lastchar - li->buffer));
    if (lua_pcall(L, 2, 2, 0) != 0) {
        lua_pop(L, 1);
        return CC_ERROR;
    }
    ins = lua_tostring(L, -2);
    show = lua_tostring(L, -1);
    if (show != NULL && *show) {
        fprintf(stdout, "\n%s\n", show);
        fflush(stdout);
        rc = CC_REDISPLAY;
    }
    if (ins != NULL && *ins)
        el_insertstr(e, ins);
    else if (show == NULL || !*show)
        rc = CC_REFRESH_BEEP;
    lua_pop(L, 2);
    return rc;
}

/* ESC [ 200 ~: a bracketed paste, read to ESC [ 201 ~ and inserted as
 * text (CR as newline); a paste ending with a newline is accepted. */
static unsigned char on_paste(EditLine *e, int ch)
{
    static const char end[] = "\033[201~";
    weir_buf b = {0};
    size_t m = 0;
    char c;
    int accept = 0;

    (void)ch;
    while (el_getc(e, &c) == 1) {
        if (c == end[m]) {
            if (++m == sizeof end - 1)
                break;
            continue;
        }
        if (m > 0) {
            weir_buf_append(&b, end, m);
            m = c == end[0];
            if (m)
                continue;
        }
        if (c == '\r')
            c = '\n';
        weir_buf_append(&b, &c, 1);
    }
    if (b.len > 0 && b.data[b.len - 1] == '\n') {
        accept = 1;
        b.len--;
    }
    if (weir_buf_append(&b, "", 1) == WEIR_OK && b.len > 1)
        el_insertstr(e, b.data);
    weir_buf_free(&b);
    return accept ? CC_NEWLINE : CC_REFRESH;
}

static int l_close(lua_State *L)
{
    if (el != NULL) {
        el_end(el);
        el = NULL;
    }
    if (hist != NULL) {
        history_end(hist);
        hist = NULL;
    }
    if (complete_ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, complete_ref);
        complete_ref = LUA_NOREF;
    }
    return 0;
}

static int l_open(lua_State *L)
{
    HistEvent ev;
    const char *term = getenv("TERM");

    luaL_checktype(L, 1, LUA_TFUNCTION);
    l_close(L);
    lua_pushvalue(L, 1);
    complete_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    el = el_init("weir", stdin, stdout, stderr);
    hist = history_init();
    if (el == NULL || hist == NULL) {
        l_close(L);
        return luaL_error(L, "edit.open: cannot start libedit");
    }
    history(hist, &ev, H_SETSIZE, 1000);
    el_set(el, EL_EDITOR, "emacs");
    el_set(el, EL_PROMPT, prompt_fn);
    el_set(el, EL_HIST, history, hist);
    /* the wide form keeps the (static) names; el_set would copy them
     * with wcsdup and never free the copies */
    el_wset(el, EL_ADDFN, L"weir-complete", L"complete the word", on_tab);
    el_set(el, EL_BIND, "^I", "weir-complete", NULL);
    el_wset(el, EL_ADDFN, L"weir-paste", L"bracketed paste", on_paste);
    el_set(el, EL_BIND, "\\e[200~", "weir-paste", NULL);
    el_source(el, NULL); /* the user's ~/.editrc, if any */
    paste_on = term == NULL || strcmp(term, "dumb") != 0;
    lua_pushboolean(L, 1);
    return 1;
}

static int l_read(lua_State *L)
{
    const char *p = luaL_checkstring(L, 1);
    const char *line;
    int n = 0;

    if (el == NULL)
        return luaL_error(L, "edit.read: edit.open first");
    snprintf(prompt_text, sizeof prompt_text, "%s", p);
    if (paste_on)
        fputs("\033[?2004h", stdout);
    fflush(stdout);
    cur_L = L;
    errno = 0;
    line = el_gets(el, &n);
    cur_L = NULL;
    if (paste_on) {
        fputs("\033[?2004l", stdout);
        fflush(stdout);
    }
    if (line == NULL || n <= 0) {
        if (n < 0 || errno == EINTR) {
            lua_pushboolean(L, 0);
            return 1;
        }
        lua_pushnil(L);
        return 1;
    }
    if (n > 0 && line[n - 1] == '\n')
        n--;
    lua_pushlstring(L, line, (size_t)n);
    return 1;
}

static int l_add(lua_State *L)
{
    const char *s = luaL_checkstring(L, 1);
    HistEvent ev;

    if (hist != NULL && *s)
        history(hist, &ev, H_ENTER, s);
    return 0;
}

static int l_size(lua_State *L)
{
    struct winsize ws;

    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) != 0 || ws.ws_row == 0)
        return 0;
    lua_pushinteger(L, ws.ws_row);
    lua_pushinteger(L, ws.ws_col);
    return 2;
}

const luaL_Reg weir_edit_natives[] = {
    { "open", l_open },
    { "read", l_read },
    { "add", l_add },
    { "close", l_close },
    { "size", l_size },
    { NULL, NULL },
};
