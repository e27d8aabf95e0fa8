//! `./build.sh` links `bin/` to wherever cargo really put the binary.

use std::path::Path;
use std::process::Command;

#[test]
fn build_sh_links_bin_to_the_binary_in_cargo_target_dir() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // A copy of the repository's sources, so the test leaves the real bin/ alone.
    let copy = tempfile::tempdir().unwrap();
    for entry in ["Cargo.toml", "Cargo.lock", "build.sh", "src"] {
        let status = Command::new("cp")
            .args(["-r"])
            .arg(repo.join(entry))
            .arg(copy.path())
            .status()
            .unwrap();
        assert!(status.success());
    }
    // A target dir of its own under target/, kept between runs so only the first one is slow.
    let target = repo.join("target").join("build-sh-test");
    let out = Command::new("bash")
        .arg(copy.path().join("build.sh"))
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = std::fs::read_link(copy.path().join("bin/gclab")).unwrap();
    assert_eq!(link, target.join("release/gclab"));
    let version = Command::new(copy.path().join("bin/gclab"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("gclab "));
    // The walkthrough's names run it too.
    let help = Command::new(copy.path().join("bin/cli"))
        .arg("-help")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage: gclab cli"));
    assert!(stdout.contains("built gclab "), "{stdout}");
}
