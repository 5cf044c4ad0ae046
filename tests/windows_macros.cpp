// Win32 only: including childproc leaves no min/max macros and no WIN32_LEAN_AND_MEAN behind.
#include <childproc.hpp>

#include <algorithm>

#ifdef min
#  error "childproc leaked the min macro"
#endif
#ifdef max
#  error "childproc leaked the max macro"
#endif
#ifdef WIN32_LEAN_AND_MEAN
#  error "childproc leaked WIN32_LEAN_AND_MEAN"
#endif

int windows_macros_use() { return std::max(1, 2); }
