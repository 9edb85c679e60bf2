/*
 * edit.h - line editing for weir repl, over libedit (histedit.h): a prompt
 * with emacs keys, history (entries given by the caller: weir keeps its
 * own history file, docs/adr/0046), reverse search (^R), bracketed paste
 * (a pasted text goes in whole, a tab in it never completes) and tab
 * completion through a Lua function. Classic-API natives of the trusted
 * state, in weir._native.edit:
 *
 * weir:native:begin
 * edit.open(complete) -> true
 *   Start editing on the terminal of stdin/stdout; complete(text before
 *   the cursor, whole line) -> insert, show: text to insert at the
 *   cursor, and a list to print above the prompt (or nil).
 * edit.read(prompt) -> line | nil | false
 *   A line (a pasted text may hold newlines); nil at end of input (^D);
 *   false when a signal (^C) interrupted the reading.
 * edit.add(entry)
 *   Add an entry to the history (whole: newlines kept).
 * edit.close()
 *   Restore the terminal; safe twice.
 * edit.size() -> rows, columns | nil
 *   The terminal's size (of stdout), nil when it is not a terminal.
 * weir:native:end
 */
#ifndef WEIR_EDIT_H
#define WEIR_EDIT_H

#include <lauxlib.h>

extern const luaL_Reg weir_edit_natives[];

#endif
