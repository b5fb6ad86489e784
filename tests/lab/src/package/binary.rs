//! A built binary is what its target promises: a static ELF for the right
//! machine (no program interpreter, so no libc needed where it runs), or an
//! x86-64 PE console program.

use super::Target;
use std::path::Path;

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const PT_INTERP: u32 = 3;
const PE_AMD64: u16 = 0x8664;
const PE_CONSOLE: u16 = 3;

pub fn check(path: &Path, target: Target) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let problem = match target {
        Target::LinuxX86_64 => static_elf(&bytes, EM_X86_64),
        Target::LinuxAarch64 => static_elf(&bytes, EM_AARCH64),
        Target::WindowsX86_64 => pe_console_amd64(&bytes),
    };
    problem.map_err(|p| format!("{} is not a {} binary as packaged: {p}", path.display(), target.triple()))
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, String> {
    b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]])).ok_or_else(|| "truncated".to_string())
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]])).ok_or_else(|| "truncated".to_string())
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, String> {
    let lo = u32_at(b, at)? as u64;
    let hi = u32_at(b, at + 4)? as u64;
    Ok(lo | (hi << 32))
}

/// ELF64 little-endian for `machine`, without a PT_INTERP program header
/// (static or static-pie).
pub fn static_elf(b: &[u8], machine: u16) -> Result<(), String> {
    if b.get(0..4) != Some(b"\x7fELF") || b.get(4) != Some(&2) || b.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let found = u16_at(b, 18)?;
    if found != machine {
        return Err(format!("ELF machine {found}, expected {machine}"));
    }
    let phoff = usize::try_from(u64_at(b, 32)?).map_err(|_| "bad program header offset")?;
    let phentsize = u16_at(b, 54)? as usize;
    let phnum = u16_at(b, 56)? as usize;
    for i in 0..phnum {
        if u32_at(b, phoff + i * phentsize)? == PT_INTERP {
            return Err("it is dynamically linked (it names a program interpreter)".into());
        }
    }
    Ok(())
}

pub fn pe_console_amd64(b: &[u8]) -> Result<(), String> {
    if b.get(0..2) != Some(b"MZ") {
        return Err("not a PE file".into());
    }
    let pe = u32_at(b, 0x3c)? as usize;
    if b.get(pe..pe + 4) != Some(b"PE\0\0") {
        return Err("no PE signature".into());
    }
    let machine = u16_at(b, pe + 4)?;
    if machine != PE_AMD64 {
        return Err(format!("PE machine {machine:#x}, expected x86-64"));
    }
    // The optional header follows the 20-byte COFF header; Subsystem is at
    // offset 68 in it (PE32+ as well).
    let subsystem = u16_at(b, pe + 24 + 68)?;
    if subsystem != PE_CONSOLE {
        return Err(format!("subsystem {subsystem}, expected a console program (Stash reads its stdout)"));
    }
    Ok(())
}
