/* The serial console on the terminal: input from a host fd into COM1, raw
 * terminal mode while the VM runs, Ctrl-A x to stop the VM, and
 * SIGINT/SIGTERM/SIGHUP as a clean stop. */
#ifndef TARN_CONSOLE_H
#define TARN_CONSOLE_H

struct vm;

/* Attach in_fd (may be -1) as the guest's serial input and route the stop
 * signals through the VM's event loop. 0 or -errno. */
int console_attach(struct vm *vm, int in_fd) __attribute__((warn_unused_result));
/* Before console_attach: also serve the console on listen_fd, a
 * listening Unix socket (tarn run --console-sock): up to 4 clients at
 * once, each sent what the guest writes from then on (a client that
 * cannot take a byte at once loses it), its bytes the guest's input as
 * the terminal's are (no Ctrl-A escapes). */
void console_listen(int listen_fd);
/* Restore the terminal (also done at exit). */
void console_detach(void);

#endif
