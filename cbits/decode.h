/*
 * zPCI decoder for other C code (cbits/trap.c and friends).
 *
 * The struct and the prototypes live in decode_api.h, which cffi also parses
 * and which therefore can have neither includes nor a guard; this header
 * supplies both, so C users include this one, once or many times.
 */
#ifndef ZPCI_DECODE_H
#define ZPCI_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "decode_api.h"

#endif
