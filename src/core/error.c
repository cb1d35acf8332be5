#include "resil/error.h"

const char *resil_strerror(resil_err err) {
  switch (err) {
#define RESIL__ERR_TEXT(name, value, msg)                                      \
  case RESIL_##name:                                                           \
    return msg;
    RESIL_ERR_MAP(RESIL__ERR_TEXT)
#undef RESIL__ERR_TEXT
  }
  return "unknown error";
}

const char *resil_err_name(resil_err err) {
  switch (err) {
#define RESIL__ERR_NAME(name, value, msg)                                      \
  case RESIL_##name:                                                           \
    return #name;
    RESIL_ERR_MAP(RESIL__ERR_NAME)
#undef RESIL__ERR_NAME
  }
  return "UNKNOWN";
}
