/* resil: symbol visibility.
 *
 * The library is built with -fvisibility=hidden; only declarations marked
 * RESIL_API are exported from the shared object. Static builds define
 * RESIL_STATIC (set by the CMake package and resil.pc for the static target)
 * so nothing is marked for export or import. */
#ifndef RESIL_EXPORT_H
#define RESIL_EXPORT_H

#if defined(RESIL_STATIC)
#define RESIL_API
#elif defined(_WIN32)
#if defined(RESIL_BUILDING)
#define RESIL_API __declspec(dllexport)
#else
#define RESIL_API __declspec(dllimport)
#endif
#elif defined(__GNUC__) || defined(__clang__)
#define RESIL_API __attribute__((visibility("default")))
#else
#define RESIL_API
#endif

#endif /* RESIL_EXPORT_H */
