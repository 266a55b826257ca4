/*
 * tui.h: the full-screen terminal chat of `tern` (no subcommand).
 *
 * The screen, keys and commands are described in tui.c and by /help.
 * Everything runs on one libuv loop: the messaging core (app.h), the
 * terminal's input (a poll on stdin), SIGWINCH and a one-second tick.
 */
#ifndef TERN_TUI_H
#define TERN_TUI_H

/*
 * tui_main: opens the profile in dir, and, if it is registered and stdin
 * and stdout are a terminal, runs the chat until /quit (or Ctrl-C, SIGTERM,
 * SIGHUP). nameserver is reserved for finding nodes by DNS (may be NULL).
 * Returns the process exit status, as the CLI's: 0 ok, 1 error, 2 usage
 * (no terminal), 4 not registered.
 */
int tui_main(const char *dir, const char *nameserver);

#endif
