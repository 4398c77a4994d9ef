/* tarn's version, as `tarn version` and the API report it. */
#ifndef TARN_VERSION_H
#define TARN_VERSION_H

#define TARN_VERSION "0.1"

#endif
