//! Runs one command inside a throw-away VM booted with another kernel — for a test
//! whose kernel feature this host's kernel lacks (CI's kernel has no 802.1Q VLAN
//! devices; Debian's `linux-image-amd64` has the `8021q` module).
//!
//! The VM is qemu-system-x86_64 (`-accel kvm` when `/dev/kvm` opens, else `-accel tcg`;
//! `FULCRUM_VM_ACCEL=tcg` forces TCG) with 2 vCPUs, 1.5 GiB, **no network device**, the
//! kernel `/boot/vmlinuz-VER` whose modules are in `/lib/modules/VER` (the newest such
//! pair, or `FULCRUM_VM_KERNEL=/boot/vmlinuz-VER`), and a small initramfs built here:
//! a static busybox (Debian's `busybox-static`), the virtio-pci and 9p modules (with
//! their dependencies, from `modules.dep`) and an init script. That init mounts the
//! host's root filesystem read-only over 9p (`-virtfs … readonly=on`), puts tmpfs on
//! the directories a test writes (`/tmp`, `/run`, `/var/tmp`, `/var/log`, `/var/lib`),
//! switches root to it, loads the modules the caller names with the host's `modprobe`,
//! runs the command (so the same binaries, at the same paths, as on the host) and powers
//! off. The kernel's console goes to the first serial port, the command's output to the
//! second; each is a file the caller gets back.
//!
//! Bounded: qemu is killed by its PID when `limit` passes, and when the [`Vm`] guard
//! drops (also when a test panics). Nothing but the runner's own scratch directory is
//! written on the host.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Set in the guest's environment: the command runs inside the VM.
pub const IN_VM: &str = "FULCRUM_IN_VM";

/// The line the guest prints after the command, with its exit status.
const EXIT_MARK: &str = "FULCRUM_VM_EXIT=";

/// What a VM run gave.
#[derive(Debug)]
pub struct Outcome {
    /// The command's exit status in the guest (`None`: it never reported one — the VM
    /// did not boot, or timed out).
    pub status: Option<i32>,
    /// The command's output (stdout and stderr).
    pub output: String,
    /// The guest's serial console (kernel messages, init's own lines).
    pub console: String,
    /// `kvm` or `tcg`.
    pub accel: &'static str,
    /// Kernel version booted.
    pub kernel: String,
    /// From qemu's start to its exit.
    pub elapsed: Duration,
    /// qemu was killed at the time limit.
    pub timed_out: bool,
}

impl Outcome {
    /// Everything, for a failure message.
    pub fn report(&self) -> String {
        format!(
            "VM ({} kernel {}, {:.1} s{}): exit status {:?}\n--- command output ---\n{}\n--- guest console ---\n{}",
            self.accel,
            self.kernel,
            self.elapsed.as_secs_f64(),
            if self.timed_out { ", TIMED OUT" } else { "" },
            self.status,
            self.output,
            self.console
        )
    }
}

/// A kernel to boot: its image and version (`/lib/modules/VERSION`).
#[derive(Debug, Clone)]
pub struct Kernel {
    pub image: PathBuf,
    pub version: String,
}

/// The kernel to boot: `FULCRUM_VM_KERNEL`, else the newest `/boot/vmlinuz-VER` with a
/// `/lib/modules/VER/modules.dep`.
pub fn kernel() -> Result<Kernel, String> {
    let with_modules = |image: PathBuf| -> Option<Kernel> {
        let name = image.file_name()?.to_str()?;
        let version = name.strip_prefix("vmlinuz-")?.to_string();
        Path::new("/lib/modules")
            .join(&version)
            .join("modules.dep")
            .is_file()
            .then_some(Kernel { image, version })
    };
    if let Some(k) = std::env::var_os("FULCRUM_VM_KERNEL") {
        let image = PathBuf::from(k);
        return with_modules(image.clone()).ok_or_else(|| {
            format!(
                "FULCRUM_VM_KERNEL={}: not a vmlinuz-VER with /lib/modules/VER",
                image.display()
            )
        });
    }
    let mut found: Vec<Kernel> = fs::read_dir("/boot")
        .map_err(|e| format!("/boot: {e}"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| with_modules(e.path()))
        .collect();
    found.sort_by_key(|k| natural(&k.version));
    found.pop().ok_or_else(|| {
        "no /boot/vmlinuz-VER with /lib/modules/VER (Debian's linux-image-amd64 has one)"
            .to_string()
    })
}

/// A version as numbers and words, so 6.1.0-57 sorts after 6.1.0-9.
fn natural(v: &str) -> Vec<(u64, String)> {
    v.split(|c: char| !c.is_ascii_alphanumeric())
        .map(|p| (p.parse().unwrap_or(0), p.to_string()))
        .collect()
}

/// The modules named (by module name) and everything they depend on, dependencies
/// first, as paths from `modules.dep`. A module built into the kernel (in
/// `modules.builtin`) needs no loading and is left out.
pub fn modules_with_deps(version: &str, names: &[&str]) -> Result<Vec<PathBuf>, String> {
    let root = Path::new("/lib/modules").join(version);
    let dep = fs::read_to_string(root.join("modules.dep"))
        .map_err(|e| format!("{}/modules.dep: {e}", root.display()))?;
    let builtin = fs::read_to_string(root.join("modules.builtin")).unwrap_or_default();
    let key = |path: &str| -> String {
        let base = path.rsplit('/').next().unwrap_or(path);
        let base = base.split(".ko").next().unwrap_or(base);
        base.replace('-', "_")
    };
    let mut table = std::collections::HashMap::new();
    for line in dep.lines() {
        if let Some((m, deps)) = line.split_once(':') {
            let deps: Vec<String> = deps.split_whitespace().map(key).collect();
            table.insert(key(m), (m.to_string(), deps));
        }
    }
    let builtin: Vec<String> = builtin.lines().map(key).collect();
    fn visit(
        name: &str,
        table: &std::collections::HashMap<String, (String, Vec<String>)>,
        builtin: &[String],
        root: &Path,
        out: &mut Vec<PathBuf>,
        seen: &mut Vec<String>,
    ) -> Result<(), String> {
        if seen.iter().any(|s| s == name) {
            return Ok(());
        }
        seen.push(name.to_string());
        let Some((path, deps)) = table.get(name) else {
            return if builtin.iter().any(|b| b == name) {
                Ok(())
            } else {
                Err(format!("module {name} is not in {}", root.display()))
            };
        };
        for d in deps {
            visit(d, table, builtin, root, out, seen)?;
        }
        out.push(root.join(path));
        Ok(())
    }
    let (mut out, mut seen) = (Vec::new(), Vec::new());
    for n in names {
        visit(
            &n.replace('-', "_"),
            &table,
            &builtin,
            &root,
            &mut out,
            &mut seen,
        )?;
    }
    Ok(out)
}

/// A `newc` cpio archive (what the kernel unpacks as its initramfs), built in memory.
struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn new() -> Cpio {
        Cpio {
            buf: Vec::new(),
            ino: 1,
        }
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            1, // nlink
            0, // mtime
            data.len() as u32,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        self.ino += 1;
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, (0, 0), &[]);
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(name, 0o100000 | mode, (0, 0), data);
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.buf
    }
}

/// The initramfs's `/init` (busybox sh, PID 1): mount the host's root over 9p, tmpfs
/// on the writable directories, switch root and run stage 2 there.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
WRITABLE="tmp run var/tmp var/log var/lib"
export PATH=/bin
fail() { echo "fulcrum-vm init: $*"; echo "FULCRUM_VM_EXIT=254" >/dev/ttyS1; poweroff -f; }
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in /modules/*.ko; do insmod "$m" || fail "insmod $m"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /newroot || fail "mount 9p root"
for d in $WRITABLE; do
  [ -d /newroot/$d ] && { mount -t tmpfs -o mode=0755 tmpfs /newroot/$d || fail "tmpfs $d"; }
done
chmod 1777 /newroot/tmp /newroot/var/tmp
mkdir -p /newroot/run/fulcrum-vm
cp /bin/busybox /stage2 /cmd /newroot/run/fulcrum-vm/ || fail "copy stage 2"
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
exec switch_root /newroot /run/fulcrum-vm/busybox sh /run/fulcrum-vm/stage2
"#;

/// Stage 2, PID 1 on the host's root: the caller's modules, then the command (its
/// output to the second serial port), then power off.
const STAGE2: &str = r#"bb=/run/fulcrum-vm/busybox
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
$bb mkdir -p /dev/shm /dev/pts
$bb mount -t tmpfs -o mode=1777 tmpfs /dev/shm
$bb mount -t devpts devpts /dev/pts
$bb hostname fulcrum-vm
for m in $FULCRUM_VM_MODULES; do /sbin/modprobe "$m" || echo "modprobe $m failed" >/dev/ttyS1; done
$bb sh /run/fulcrum-vm/cmd >/dev/ttyS1 2>&1 </dev/null
echo "FULCRUM_VM_EXIT=$?" >/dev/ttyS1
$bb sync
$bb poweroff -f
"#;

/// Single-quotes `s` for sh.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A running qemu; killed (by PID) and reaped when dropped.
struct Vm {
    child: Child,
}

impl Drop for Vm {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// `kvm` when `/dev/kvm` opens read-write and is hardware-assisted KVM (`kvm_intel` or
/// `kvm_amd`), else `tcg`; `FULCRUM_VM_ACCEL=kvm|tcg` decides instead. This workplace's
/// `/dev/kvm` is PVM (`kvm_pvm`, nested virtualisation without VMX): it runs only
/// kernels built as PVM guests, and a stock kernel hangs in its real-mode setup there.
fn accel() -> &'static str {
    match std::env::var("FULCRUM_VM_ACCEL").as_deref() {
        Ok("tcg") => return "tcg",
        Ok("kvm") => return "kvm",
        _ => {}
    }
    let hw = ["kvm_intel", "kvm_amd"]
        .iter()
        .any(|m| Path::new("/sys/module").join(m).exists());
    match fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) if hw => "kvm",
        _ => "tcg",
    }
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Boots the VM and runs `argv` in it with `env` (plus [`IN_VM`]=1) after
/// `modprobe`-ing `modules`; waits at most `limit` (`FULCRUM_VM_LIMIT_SECS` overrides),
/// then kills qemu. `Err` when the VM cannot be started at all (no kernel, no qemu, no
/// static busybox); a guest failure is an `Ok` with the status, output and console.
pub fn run(
    argv: &[&str],
    env: &[(&str, &str)],
    modules: &[&str],
    limit: Duration,
) -> Result<Outcome, String> {
    // The guest sees the host's files except under the directories it mounts a fresh
    // tmpfs on (the init's WRITABLE).
    let hidden = ["/tmp", "/run", "/var/tmp", "/var/log", "/var/lib"];
    let prog = argv.first().ok_or("no command to run in the VM")?;
    if let Some(d) = hidden.iter().find(|d| Path::new(prog).starts_with(d)) {
        return Err(format!(
            "{prog}: the guest mounts an empty tmpfs on {d}, so it would not see this program"
        ));
    }
    let k = kernel()?;
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .ok_or("no busybox (Debian's busybox-static)")?;
    let bb = fs::read(busybox).map_err(|e| format!("{}: {e}", busybox.display()))?;
    if bb.windows(8).take(8192).any(|w| w == b"ld-linux") {
        return Err(format!(
            "{} is dynamically linked: the initramfs needs busybox-static",
            busybox.display()
        ));
    }
    let mods = modules_with_deps(&k.version, &["virtio_pci", "9pnet_virtio", "9p"])?;

    let dir = std::env::temp_dir().join(format!(
        "fulcrum-vm-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let scratch = Scratch(dir.clone());

    let mut cmd = String::new();
    for (key, v) in env.iter().chain([(IN_VM, "1")].iter()) {
        cmd.push_str(&format!("export {key}={}\n", quote(v)));
    }
    let line: Vec<String> = argv.iter().map(|a| quote(a)).collect();
    cmd.push_str(&line.join(" "));
    cmd.push('\n');

    let mut cpio = Cpio::new();
    for d in ["bin", "dev", "proc", "sys", "newroot", "modules"] {
        cpio.dir(d);
    }
    // The kernel opens /dev/console for init before devtmpfs is mounted.
    cpio.entry("dev/console", 0o020600, (5, 1), &[]);
    cpio.file("bin/busybox", 0o755, &bb);
    cpio.file("init", 0o755, INIT.as_bytes());
    let stage2 = format!("FULCRUM_VM_MODULES={}\n{STAGE2}", quote(&modules.join(" ")));
    cpio.file("stage2", 0o644, stage2.as_bytes());
    cpio.file("cmd", 0o644, cmd.as_bytes());
    for (i, m) in mods.iter().enumerate() {
        let data = fs::read(m).map_err(|e| format!("{}: {e}", m.display()))?;
        let base = m.file_name().and_then(|n| n.to_str()).unwrap_or("m.ko");
        cpio.file(&format!("modules/{i:02}-{base}"), 0o644, &data);
    }
    let initrd = dir.join("initrd.cpio");
    fs::write(&initrd, cpio.finish()).map_err(|e| format!("{}: {e}", initrd.display()))?;

    let (console, out) = (dir.join("console.log"), dir.join("output.log"));
    let accel = accel();
    let qemu_log = dir.join("qemu.log");
    let qemu_err =
        fs::File::create(&qemu_log).map_err(|e| format!("{}: {e}", qemu_log.display()))?;
    let mut q = Command::new("qemu-system-x86_64");
    q.args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-machine", "q35", "-accel", accel])
        .args(["-cpu", if accel == "kvm" { "host" } else { "max" }])
        .args(["-smp", "2", "-m", "1536", "-nic", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(&k.image)
        .arg("-initrd")
        .arg(&initrd)
        .args([
            "-append",
            "console=ttyS0 panic=-1 quiet loglevel=4 rdinit=/init mitigations=off",
        ])
        .args([
            "-virtfs",
            "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        ])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-serial")
        .arg(format!("file:{}", out.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(qemu_err);
    let limit = std::env::var("FULCRUM_VM_LIMIT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(limit, Duration::from_secs);
    let start = Instant::now();
    let child = q
        .spawn()
        .map_err(|e| format!("cannot run qemu-system-x86_64 (Debian's qemu-system-x86): {e}"))?;
    let mut vm = Vm { child };
    let mut timed_out = false;
    loop {
        match vm.child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() >= limit => {
                timed_out = true;
                break;
            }
            Ok(None) => thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("waiting for qemu: {e}")),
        }
    }
    let qemu_status = if timed_out {
        None
    } else {
        vm.child.try_wait().ok().flatten()
    };
    drop(vm); // kills it (by PID) if still running, and reaps it
    let elapsed = start.elapsed();
    let read = |p: &Path| {
        fs::read(p)
            .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
            .unwrap_or_default()
    };
    let mut output = read(&out);
    let mut console = read(&console);
    let qemu_err = read(&qemu_log);
    if !qemu_err.is_empty() || qemu_status.is_some_and(|s| !s.success()) {
        console.push_str(&format!("\n[qemu {qemu_status:?}] {qemu_err}"));
    }
    let status = output
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix(EXIT_MARK))
        .and_then(|s| s.trim().parse().ok());
    if let Some(i) = output.rfind(EXIT_MARK) {
        output.truncate(i);
    }
    drop(scratch);
    Ok(Outcome {
        status,
        output,
        console,
        accel,
        kernel: k.version,
        elapsed,
        timed_out,
    })
}

/// The runner's scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
