//! An owned `mmap(2)` region, unmapped when dropped: the memory of the packet rings, the
//! AF_XDP rings and the UMEM, and of the tests' stand-ins for them.

use std::io;
use std::os::fd::RawFd;

/// A read-write mapping of `len` bytes.
#[derive(Debug)]
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    /// `mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, offset)`: a kernel ring of
    /// `fd` (`MAP_SHARED`, the offset naming which), or anonymous memory
    /// (`MAP_PRIVATE | MAP_ANONYMOUS`, `fd` -1).
    pub fn new(
        len: usize,
        flags: libc::c_int,
        fd: RawFd,
        offset: libc::off_t,
    ) -> io::Result<Mapping> {
        // SAFETY: asks the kernel for a fresh mapping (no address hint, so nothing
        // existing is replaced); the result is checked against MAP_FAILED and owned by
        // the returned value alone.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The first byte.
    pub fn ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Its length in bytes (never 0: the kernel refuses an empty mapping).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; its owners lend no slice
        // into it beyond their own borrows of it.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}
