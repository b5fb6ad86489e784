/* For the wine test only (tests/package.rs): Wine 8 has no
 * bcryptprimitives.dll, whose ProcessPrng Rust's std uses for random bytes
 * on Windows 10+. This gives that one function, on top of RtlGenRandom
 * (advapi32's SystemFunction036), which Wine has. Real Windows ships its own
 * bcryptprimitives.dll; this file is never packaged. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
