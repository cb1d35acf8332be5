#include "resil/version.h"

const char *resil_version(void) { return RESIL_VERSION_STRING; }

unsigned resil_version_num(void) { return RESIL_VERSION_NUM; }
