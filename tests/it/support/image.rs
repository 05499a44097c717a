//! The container image, built from the Dockerfile by `scripts/build-image.sh --prebuilt` (buildah with
//! vfs storage and chroot isolation: no daemon, no registry) around this test build's `codec-server`,
//! and commands run in it with `buildah run`. Containers and the image are removed on drop.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

const HOW_TO: &str = "the image tests need buildah and root: `apt-get install buildah` (scripts/test-env.sh \
                      installs it) and run the tests as root (vfs storage with chroot isolation needs no daemon)";

/// An image tagged for this test run.
pub struct Image {
    pub tag: String,
    buildah: Vec<String>,
}

impl Image {
    /// Builds the image with the binary under test as the Dockerfile's `build` stage output.
    pub fn build() -> Image {
        let found = Command::new("buildah").arg("--version").output();
        assert!(found.is_ok_and(|o| o.status.success()), "buildah does not run: {HOW_TO}");
        let uid = Command::new("id").arg("-u").output().expect("id -u");
        assert_eq!(String::from_utf8_lossy(&uid.stdout).trim(), "0", "not root: {HOW_TO}");

        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-image.sh");
        let tag = format!("localhost/temporal-codec-server:it-{}", std::process::id());
        let built = Command::new("bash")
            .arg(&script)
            .args(["--prebuilt", env!("CARGO_BIN_EXE_codec-server"), "--tag", &tag])
            .output()
            .expect("run scripts/build-image.sh");
        assert!(built.status.success(), "scripts/build-image.sh failed: {}", String::from_utf8_lossy(&built.stderr));
        let printed = Command::new("bash").arg(&script).arg("--print-buildah").output().expect("--print-buildah");
        let buildah = String::from_utf8_lossy(&printed.stdout).lines().map(str::to_owned).collect();
        Image { tag, buildah }
    }

    fn buildah(&self) -> Command {
        let mut command = Command::new(&self.buildah[0]);
        command.args(&self.buildah[1..]);
        command
    }

    /// The image's OCI configuration (`User`, `Entrypoint`, `Cmd`, `Env`, `ExposedPorts`, `Labels`).
    pub fn config(&self) -> Value {
        let out = self.buildah().args(["inspect", "--type", "image", &self.tag]).output().expect("buildah inspect");
        assert!(out.status.success(), "buildah inspect: {}", String::from_utf8_lossy(&out.stderr));
        let inspect: Value = serde_json::from_slice(&out.stdout).expect("inspect JSON");
        inspect["OCIv1"]["config"].clone()
    }

    /// A working container of the image.
    pub fn container(&self) -> Container<'_> {
        let out = self.buildah().args(["from", "--quiet", &self.tag]).output().expect("buildah from");
        assert!(out.status.success(), "buildah from: {}", String::from_utf8_lossy(&out.stderr));
        Container { image: self, id: String::from_utf8_lossy(&out.stdout).trim().to_owned() }
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = self.buildah().args(["rmi", &self.tag]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

/// A working container; `run` uses the image's user, environment and working directory.
pub struct Container<'a> {
    image: &'a Image,
    id: String,
}

/// A bind mount: host directory, path in the container, read-only.
pub type Mount<'a> = (&'a Path, &'a str, bool);

impl Container<'_> {
    fn command(&self, mounts: &[Mount<'_>], args: &[&str]) -> Command {
        let mut command = self.image.buildah();
        command.args(["run", "--isolation", "chroot"]);
        for (host, path, read_only) in mounts {
            let options = if *read_only { ":ro" } else { "" };
            command.arg("--volume").arg(format!("{}:{path}{options}", host.display()));
        }
        command.arg(&self.id).arg("--").args(args);
        command
    }

    /// Runs `args` to completion.
    pub fn run(&self, mounts: &[Mount<'_>], args: &[&str]) -> Output {
        self.command(mounts, args).output().expect("buildah run")
    }

    /// Starts `args` with stderr piped; killed when the returned value is dropped.
    pub fn spawn(&self, mounts: &[Mount<'_>], args: &[&str]) -> Running {
        let child = self
            .command(mounts, args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("buildah run");
        Running(child)
    }
}

/// A `buildah run` in progress, stopped when dropped (also when a test fails half-way): SIGTERM, which
/// buildah passes on as a kill of the process in the container. SIGKILL would not: buildah's chroot
/// runner and the process would outlive it, reparented to init.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        for _ in 0..200 {
            if !matches!(self.0.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self.image.buildah().args(["rm", &self.id]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}
