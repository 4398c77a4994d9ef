/* `tarn ctl`: a client of the per-VM API (api/api.h) for the shell. */
#ifndef TARN_CTL_H
#define TARN_CTL_H

/* argv[0] is "ctl". Returns the exit status. */
int cmd_ctl(int argc, char **argv);

#endif
