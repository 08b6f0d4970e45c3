/* version.h — Sluice's version, reported by /v1/info and --version. */
#ifndef SLUICE_VERSION_H
#define SLUICE_VERSION_H
#define SLUICE_VERSION "0.1.0"
#endif
