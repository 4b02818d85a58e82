//! Starts a real `moto_server` (the AWS emulator) on a free port for one test, and
//! stops it when the test ends. Each test gets its own server, so state never
//! leaks between tests, even when they run in parallel.
//! The server is `tests/moto_server.py`: moto with its DynamoDB requests applied
//! one at a time, atomic as in a region.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;

pub struct MotoServer {
    child: Child,
    pub endpoint: String,
}

static INSTALL: Once = Once::new();

/// Makes sure `moto_server` can run, installing `moto[server]` with pip when it is
/// missing. Panics with the reason when that is impossible.
fn ensure_installed() {
    INSTALL.call_once(|| {
        if moto_available() {
            return;
        }
        // Serialise concurrent installs from parallel test processes.
        let lock = std::env::temp_dir().join("kpi-moto-install.lock");
        let deadline = Instant::now() + Duration::from_secs(300);
        while std::fs::create_dir(&lock).is_err() {
            if moto_available() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited too long for another process installing moto ({})",
                lock.display()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "moto[server]"])
            .status();
        let _ = std::fs::remove_dir(&lock);
        match status {
            Ok(s) if s.success() && moto_available() => {}
            Ok(s) => panic!(
                "moto_server is not installed and `python3 -m pip install 'moto[server]'` failed ({s}); install it by hand"
            ),
            Err(e) => panic!(
                "moto_server is not installed and python3 could not be run to install it: {e}"
            ),
        }
    });
}

fn moto_available() -> bool {
    Command::new("python3")
        .args(["-c", "import moto.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free local port")
}

/// `GET /moto-api/` answers 200 once the server is ready.
fn ready(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

impl MotoServer {
    pub fn start() -> Self {
        ensure_installed();
        for _ in 0..3 {
            let port = free_port();
            let mut cmd = Command::new("python3");
            // moto's server, with DynamoDB's requests atomic as in a region
            // (see the script).
            cmd.args([
                concat!(env!("CARGO_MANIFEST_DIR"), "/moto_server.py"),
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
            #[cfg(target_os = "linux")]
            unsafe {
                use std::os::unix::process::CommandExt as _;
                // If the test process dies without unwinding, take the server with it.
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let mut child = cmd
                .spawn()
                .expect("cannot start python3 tests/moto_server.py");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if ready(port) {
                    return Self {
                        child,
                        endpoint: format!("http://127.0.0.1:{port}"),
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken between probe and bind: try another
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto server did not start");
    }

    /// SDK configuration pointing every AWS client at this server, with dummy
    /// credentials. Same loader (HTTP client, TLS stack) as production.
    pub async fn sdk_config(&self) -> SdkConfig {
        sdk_config_at(&self.endpoint).await
    }

    /// Where it serves.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Environment for a child process (dev server) that should use this server
    /// through the standard `AWS_ENDPOINT_URL` variable.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        env_at(&self.endpoint)
    }
}

/// SDK configuration pointing every AWS client at `endpoint` (moto, or a
/// recorder in front of it), with dummy credentials. Same loader (HTTP
/// client, TLS stack) as production.
pub async fn sdk_config_at(endpoint: &str) -> SdkConfig {
    kpi_aws::sdk_config_loader()
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kms::config::Credentials::new(
            "testing", "testing", None, None, "moto",
        ))
        .load()
        .await
}

/// A child process's environment for AWS at `endpoint`.
pub fn env_at(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
    ]
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A unique name for a table, queue or key of one test.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Path of a fresh temporary directory for one test.
pub fn temp_dir(prefix: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique_name(prefix));
    std::fs::create_dir_all(&dir).expect("cannot create a temporary directory");
    dir
}

pub fn remove_dir(path: &Path) {
    let _ = std::fs::remove_dir_all(path);
}
