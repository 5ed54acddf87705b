//! libpcap, opened with `dlopen` the first time a filter is compiled, and
//! the four calls taken from it. Each `unsafe` block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::sync::{Mutex, OnceLock, PoisonError};

use engine::bpf::{Insn, MAX_INSNS};

use crate::FilterError;

/// The names libpcap is looked for under, in order: Debian's (package
/// `libpcap0.8`), then upstream's.
pub const LIBRARY_NAMES: [&str; 3] = ["libpcap.so.0.8", "libpcap.so.1", "libpcap.so"];

/// The environment variable that names the libpcap to load instead
/// (a path, or a name the dynamic loader looks up).
pub const PATH_VARIABLE: &str = "FLOWSPAN_LIBPCAP";

/// The snap length programs are compiled for: libpcap's largest, so that a
/// program's result never shortens a frame.
const SNAPLEN: c_int = 262_144;

/// `struct bpf_program`.
#[repr(C)]
struct BpfProgram {
    bf_len: c_uint,
    bf_insns: *mut Insn,
}

type FOpenOffline = unsafe extern "C" fn(*mut libc::FILE, *mut c_char) -> *mut c_void;
type Compile =
    unsafe extern "C" fn(*mut c_void, *mut BpfProgram, *const c_char, c_int, u32) -> c_int;
type GetErr = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type FreeCode = unsafe extern "C" fn(*mut BpfProgram);
type Close = unsafe extern "C" fn(*mut c_void);

/// libpcap, loaded for the rest of the process (it is never unloaded).
#[derive(Debug)]
pub struct Libpcap {
    fopen_offline: FOpenOffline,
    compile: Compile,
    geterr: GetErr,
    freecode: FreeCode,
    close: Close,
    /// libpcap before 1.8 compiled with global state: one at a time.
    lock: Mutex<()>,
}

static LIBPCAP: OnceLock<Result<Libpcap, String>> = OnceLock::new();

impl Libpcap {
    /// libpcap, loaded on the first call.
    ///
    /// # Errors
    /// No library under [`LIBRARY_NAMES`] loads, or one lacks a call.
    pub fn load() -> Result<&'static Libpcap, FilterError> {
        LIBPCAP
            .get_or_init(open)
            .as_ref()
            .map_err(|reason| FilterError::NoLibpcap {
                reason: reason.clone(),
            })
    }

    /// Compiles `expression` for frames of a capture file of link type
    /// `link_type` (a `LINKTYPE_*` value), optimised, with the netmask
    /// 0: as `tcpdump -r` compiles it for such a file.
    ///
    /// The handle is a capture file's, of only a header (in this host's
    /// byte order), not `pcap_open_dead`'s: libpcap compiles some
    /// primitives differently for files, e.g. `ip6` on BSD loopback
    /// headers tests the three BSDs' AF_INET6 values in a file and only
    /// this host's otherwise.
    pub(crate) fn compile(&self, expression: &str, link_type: u32) -> Result<Vec<Insn>, String> {
        let text = CString::new(expression).map_err(|_| "contains a NUL byte".to_owned())?;
        let mut header = Vec::with_capacity(24);
        header.extend_from_slice(&0xa1b2_c3d4u32.to_ne_bytes());
        header.extend_from_slice(&2u16.to_ne_bytes());
        header.extend_from_slice(&4u16.to_ne_bytes());
        header.extend_from_slice(&[0; 8]);
        header.extend_from_slice(&SNAPLEN.to_ne_bytes());
        header.extend_from_slice(&link_type.to_ne_bytes());
        let _one = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        // SAFETY: `header` outlives the stream (closed with the handle
        // below, or here on failure); mode is a NUL-terminated string.
        let file =
            unsafe { libc::fmemopen(header.as_mut_ptr().cast(), header.len(), c"r".as_ptr()) };
        if file.is_null() {
            return Err("fmemopen failed".into());
        }
        let mut errbuf = [0 as c_char; 256];
        // SAFETY: `file` is an open stream, `errbuf` PCAP_ERRBUF_SIZE
        // bytes; on success the handle owns the stream.
        let p = unsafe { (self.fopen_offline)(file, errbuf.as_mut_ptr()) };
        if p.is_null() {
            // SAFETY: on failure libpcap leaves the stream to the caller,
            // and writes a NUL-terminated message into `errbuf`.
            let message = unsafe {
                libc::fclose(file);
                CStr::from_ptr(errbuf.as_ptr())
            };
            return Err(message.to_string_lossy().into_owned());
        }
        let mut program = BpfProgram {
            bf_len: 0,
            bf_insns: std::ptr::null_mut(),
        };
        // SAFETY: `p` is a live handle, `program` a writable bpf_program,
        // `text` a NUL-terminated string that outlives the call.
        let rc = unsafe { (self.compile)(p, &raw mut program, text.as_ptr(), 1, 0) };
        let out = if rc != 0 {
            // SAFETY: pcap_geterr returns the handle's NUL-terminated error
            // buffer, valid until the handle is closed (below, after the
            // copy).
            let message = unsafe { CStr::from_ptr((self.geterr)(p)) };
            Err(message.to_string_lossy().into_owned())
        } else {
            let len = program.bf_len as usize;
            let insns = if program.bf_insns.is_null() || len == 0 || len > MAX_INSNS {
                Err(format!("libpcap produced a program of {len} instructions"))
            } else {
                // SAFETY: on success bf_insns points to bf_len instructions
                // (struct bpf_insn, which `Insn` mirrors), alive until
                // pcap_freecode below.
                Ok(unsafe { std::slice::from_raw_parts(program.bf_insns, len) }.to_vec())
            };
            // SAFETY: the program came from pcap_compile and is freed once.
            unsafe { (self.freecode)(&raw mut program) };
            insns
        };
        // SAFETY: `p` came from pcap_fopen_offline and is closed once (with
        // its stream).
        unsafe { (self.close)(p) };
        drop(header);
        out
    }
}

/// Opens the first library of [`LIBRARY_NAMES`] that loads, and takes its
/// calls.
fn open() -> Result<Libpcap, String> {
    let mut reasons = Vec::new();
    let chosen = std::env::var(PATH_VARIABLE).ok().filter(|p| !p.is_empty());
    let names: Vec<&str> = match &chosen {
        Some(path) => vec![path.as_str()],
        None => LIBRARY_NAMES.to_vec(),
    };
    for name in names {
        let c = CString::new(name).map_err(|e| e.to_string())?;
        // SAFETY: dlopen takes a NUL-terminated name; libpcap's
        // initialisers have no requirements of the caller.
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            reasons.push(last_dl_error(name));
            continue;
        }
        return take_calls(handle, name);
    }
    Err(reasons.join("; "))
}

/// dlerror's message, or that `name` was not found.
fn last_dl_error(name: &str) -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string valid until
    // the next dl* call on this thread; it is copied at once.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        format!("{name}: not found")
    } else {
        // SAFETY: see above.
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

fn take_calls(handle: *mut c_void, name: &str) -> Result<Libpcap, String> {
    let symbol = |s: &CStr| -> Result<*mut c_void, String> {
        // SAFETY: `handle` is a live dlopen handle; `s` is NUL-terminated.
        let f = unsafe { libc::dlsym(handle, s.as_ptr()) };
        if f.is_null() {
            Err(format!("{name} has no {}", s.to_string_lossy()))
        } else {
            Ok(f)
        }
    };
    // SAFETY: each symbol is libpcap's function of the C signature it is
    // transmuted to (pcap/pcap.h, stable since libpcap 0.9); the library is
    // never unloaded, so the pointers stay valid.
    let pcap = unsafe {
        Libpcap {
            fopen_offline: std::mem::transmute::<*mut c_void, FOpenOffline>(symbol(
                c"pcap_fopen_offline",
            )?),
            compile: std::mem::transmute::<*mut c_void, Compile>(symbol(c"pcap_compile")?),
            geterr: std::mem::transmute::<*mut c_void, GetErr>(symbol(c"pcap_geterr")?),
            freecode: std::mem::transmute::<*mut c_void, FreeCode>(symbol(c"pcap_freecode")?),
            close: std::mem::transmute::<*mut c_void, Close>(symbol(c"pcap_close")?),
            lock: Mutex::new(()),
        }
    };
    Ok(pcap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insn_has_the_layout_of_struct_bpf_insn() {
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        assert_eq!(std::mem::offset_of!(Insn, code), 0);
        assert_eq!(std::mem::offset_of!(Insn, jt), 2);
        assert_eq!(std::mem::offset_of!(Insn, jf), 3);
        assert_eq!(std::mem::offset_of!(Insn, k), 4);
    }
}
