/* Shared includes for the cmocka tests (cmocka needs these, in this order). */
#ifndef RESIL_TEST_UTIL_H
#define RESIL_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
