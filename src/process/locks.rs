//! Who holds a `flock`, as the kernel lists them in `/proc/locks`.

/// The most of `/proc/locks` read: some 60 bytes a lock, so tens of
/// thousands of them (a lock past it is not seen).
const MAX_LOCKS: u64 = 4 * 1024 * 1024;

/// One `flock` in `/proc/locks`: held, or waited for (`waiting`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flock {
    pub pid: u32,
    pub exclusive: bool,
    pub waiting: bool,
    /// The locked file: device (major, minor) and inode.
    pub device: (u32, u32),
    pub inode: u64,
}

impl Flock {
    /// Is this a lock on the file `meta` describes?
    pub fn on(&self, meta: &std::fs::Metadata) -> bool {
        use std::os::unix::fs::MetadataExt;
        self.device == device_numbers(meta.dev()) && self.inode == meta.ino()
    }
}

/// A device number's (major, minor), as `/proc/locks` shows them.
#[cfg(target_os = "linux")]
fn device_numbers(dev: u64) -> (u32, u32) {
    (rustix::fs::major(dev), rustix::fs::minor(dev))
}

/// Elsewhere `stat` gives a narrower device number (and there is no
/// `/proc/locks` to compare it with).
#[cfg(not(target_os = "linux"))]
fn device_numbers(dev: u64) -> (u32, u32) {
    let dev = dev as rustix::fs::Dev;
    (rustix::fs::major(dev), rustix::fs::minor(dev))
}

/// Every `flock` the kernel knows of; `None` where `/proc/locks` is not
/// available (not Linux).
pub fn flocks() -> Option<Vec<Flock>> {
    let mut table = super::read_proc("/proc/locks", MAX_LOCKS)?;
    if table.len() as u64 == MAX_LOCKS {
        // Cut: the last line may be half a lock.
        let whole = table.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        table.truncate(whole);
    }
    let table = String::from_utf8_lossy(&table);
    Some(table.lines().filter_map(parse_lock_line).collect())
}

/// `1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF`; a waiter's line has
/// `->` after the number.
fn parse_lock_line(line: &str) -> Option<Flock> {
    let mut fields: Vec<&str> = line.split_whitespace().collect();
    let waiting = fields.get(1) == Some(&"->");
    if waiting {
        fields.remove(1);
    }
    if fields.len() < 6 || fields[1] != "FLOCK" {
        return None;
    }
    let mut id = fields[5].split(':');
    let (maj, min, ino) = (id.next()?, id.next()?, id.next()?);
    Some(Flock {
        pid: fields[4].parse().ok()?,
        exclusive: fields[3] == "WRITE",
        waiting,
        device: (
            u32::from_str_radix(maj, 16).ok()?,
            u32::from_str_radix(min, 16).ok()?,
        ),
        inode: ino.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_lines_parse() {
        let held = parse_lock_line("1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF").unwrap();
        assert_eq!(
            (held.pid, held.exclusive, held.waiting),
            (4242, true, false)
        );
        assert_eq!((held.device, held.inode), ((0xfd, 1), 1234));
        let waiter = parse_lock_line("1: -> FLOCK  ADVISORY  WRITE 77 fd:01:1234 0 EOF").unwrap();
        assert!(waiter.waiting);
        assert!(parse_lock_line("2: POSIX  ADVISORY  WRITE 1 fd:01:9 0 EOF").is_none());
    }
}
