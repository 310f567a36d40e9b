//! The daemon's listeners under abuse (issue 18, items 4 and 6): idle connections to the metrics
//! endpoint must not exhaust descriptors (deploys, `status`, SIGHUP keep working, the accept
//! loops do not spin), and the control socket trusts only root and the daemon's own user, bounds
//! request lines, and never deletes a file that is not its socket.
//!
//! The peer-credential tests switch uid (`CommandExt::uid`), so they run as root; a run as any
//! other user fails with a message saying so rather than passing without checking.
#![allow(clippy::unwrap_used)]
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::world::{Proc, World};
use crate::support::{bin, free_port};

/// An unprivileged uid for the "someone else" side of the peer-credential tests.
const OTHER_UID: u32 = 65534;

/// `cas-certd run` with its descriptor limit (soft and hard) set to `nofile` by util-linux's
/// `prlimit`, which execs the daemon: the child's pid is the daemon's.
fn daemon_with_nofile(w: &World, config: &Path, log: &str, nofile: u64) -> Proc {
    assert!(
        Command::new("prlimit").arg("--version").output().is_ok(),
        "prlimit (util-linux) is needed to lower the daemon's descriptor limit"
    );
    let nofile = format!("--nofile={nofile}:{nofile}");
    w.daemon_via(&["prlimit", &nofile, "--"], config, log, &[])
}

/// user+system CPU time of `pid` so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name start at field 3 (state); utime is field 14.
    let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    let ticks: u64 = rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap();
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    let hz: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    Duration::from_millis(ticks * 1000 / hz)
}

/// Runs `cmd` to completion, or kills it after `timeout` and returns `None`.
fn output_within(cmd: &mut Command, timeout: Duration) -> Option<Output> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(child.wait_with_output().unwrap())
}

fn until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    f()
}

fn cli(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("--config").arg(config).args(args);
    c
}

fn sighup(pid: u32) {
    assert!(Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

/// Issue 18 item 4: 1 100 idle connections to the metrics endpoint exhausted the 1 024
/// descriptors. Here the daemon gets 160 and faces more idle connections than that (as many as
/// the kernel lets us establish: past the daemon's accept queue, connecting times out).
#[test]
fn idle_metrics_connections_leave_deploys_status_and_reload_working() {
    const NOFILE: u64 = 160;
    const IDLE_MAX: usize = 320;
    let w = World::new(&[]);
    let port = free_port();
    let metrics = format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    let cfg = w.config(&format!(
        "{}{metrics}",
        w.file_cert("www", "\"www.example.test\"")
    ));
    let d = daemon_with_nofile(&w, &cfg, "daemon.log", NOFILE);
    let pid = d.0.id();
    assert!(
        until(Duration::from_secs(20), || TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "metrics endpoint never came up"
    );
    // Connections that never send a byte (what the probe held open).
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut idle = Vec::new();
    let mut refused_in_a_row = 0;
    while idle.len() < IDLE_MAX && refused_in_a_row < 3 {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(s) => {
                idle.push(s);
                refused_in_a_row = 0;
            }
            Err(_) => refused_in_a_row += 1,
        }
    }
    eprintln!("{} idle connections established", idle.len());
    assert!(
        idle.len() as u64 > NOFILE,
        "only {} idle connections: not more than the daemon's limit",
        idle.len()
    );
    std::thread::sleep(Duration::from_secs(2));
    let (cpu0, t0) = (cpu_time(pid), Instant::now());
    let mut problems = Vec::new();

    // `status` answers from the daemon, promptly.
    match output_within(&mut cli(&cfg, &["status"]), Duration::from_secs(15)) {
        None => problems.push("`status` hung for 15 s".to_string()),
        Some(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            if !o.status.success() || !err.contains("from the daemon") {
                problems.push(format!("`status` did not answer from the daemon: {o:?}"));
            }
        }
    }
    // The certificate is ordered and deployed (files written, hook run).
    if !until(Duration::from_secs(60), || {
        std::fs::read_to_string(w.p("hook.log")).is_ok_and(|s| s.contains("reload www"))
    }) {
        problems.push("www was not deployed within 60 s".into());
    }
    // A SIGHUP reload reads the new file and deploys the added certificate.
    w.config(&format!(
        "{}{}{metrics}",
        w.file_cert("www", "\"www.example.test\""),
        w.file_cert("api", "\"api.example.test\"")
    ));
    sighup(pid);
    if !until(Duration::from_secs(60), || {
        std::fs::read_to_string(w.p("hook.log")).is_ok_and(|s| s.contains("reload api"))
    }) {
        problems.push("after SIGHUP, api was not deployed within 60 s".into());
    }
    // No accept loop spins: the daemon used well under a core over the whole window.
    let (cpu, wall) = (cpu_time(pid) - cpu0, t0.elapsed());
    let share = cpu.as_secs_f64() / wall.as_secs_f64();
    eprintln!("daemon CPU {cpu:?} over {wall:?} ({:.0} %)", share * 100.0);
    if share > 0.3 {
        problems.push(format!(
            "the daemon burnt {cpu:?} of CPU in {wall:?} ({:.0} %)",
            share * 100.0
        ));
    }
    let log = std::fs::read_to_string(w.p("daemon.log")).unwrap();
    if log.contains("Too many open files") {
        let n = log.matches("Too many open files").count();
        problems.push(format!("the log has {n} \"Too many open files\" errors"));
    }
    // Once the flood is gone, a scrape is answered.
    drop(idle);
    let mut scraped = String::new();
    let served = until(Duration::from_secs(20), || {
        scraped = scrape(port);
        scraped.contains("cas_certd_certificate_state{cert=\"api\"")
    });
    if !served {
        problems.push(format!("no scrape after the flood: {scraped:?}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Issue 18 item 4: with descriptors gone, the control socket's accept loop retried at once
/// (`continue` on every error) and spun at 120 % CPU. Here the limit of a running daemon is cut
/// to what it already uses plus a few, idle metrics connections take those few, and a `status`
/// waits on the control socket: both accept loops fail with EMFILE and must back off.
#[test]
fn accept_loops_back_off_when_descriptors_run_out() {
    let w = World::new(&[]);
    let port = free_port();
    let cfg = w.config(&format!(
        "{}[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
        w.file_cert("e", "\"e.example.test\"")
    ));
    let d = w.daemon(&cfg, "daemon.log");
    let pid = d.0.id();
    assert!(
        until(Duration::from_secs(20), || scrape(port).contains(" 200 ")),
        "metrics endpoint never answered"
    );
    std::thread::sleep(Duration::from_secs(1));
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let limit = open + 8;
    let set = Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .unwrap();
    assert!(set.success(), "prlimit --pid failed");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let _idle: Vec<TcpStream> = (0..40)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok())
        .collect();
    let mut status = cli(&cfg, &["status"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let (cpu0, t0) = (cpu_time(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(4));
    let (cpu, wall) = (cpu_time(pid) - cpu0, t0.elapsed());
    let _ = status.kill();
    let _ = status.wait();
    let share = cpu.as_secs_f64() / wall.as_secs_f64();
    eprintln!(
        "{open} descriptors open, limit {limit}: daemon CPU {cpu:?} over {wall:?} ({:.0} %)",
        share * 100.0
    );
    let log = std::fs::read_to_string(w.p("daemon.log")).unwrap();
    let bursts = log.matches("listener.accept_failed").count();
    assert!(
        share < 0.3,
        "an accept loop spins: {cpu:?} of CPU in {wall:?}"
    );
    assert!(
        (1..=20).contains(&bursts),
        "{bursts} accept_failed lines (want one per burst)"
    );
}

/// One GET /metrics, the whole answer ("" if the connection failed).
fn scrape(port: u16) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The metrics endpoint itself: an idle connection is closed after the header deadline, and
/// an endless header is cut off with 431, both while a well-formed scrape is served.
#[test]
fn metrics_endpoint_drops_idle_and_oversized_requests() {
    let w = World::new(&[]);
    let port = free_port();
    let cfg = w.config(&format!(
        "{}[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
        w.file_cert("m", "\"m.example.test\"")
    ));
    let _d = w.daemon(&cfg, "daemon.log");
    assert!(
        until(Duration::from_secs(20), || scrape(port).contains(" 200 ")),
        "metrics endpoint never answered"
    );
    // Idle: the daemon hangs up by itself (EOF), well before our 20 s patience runs out.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 64];
    let n = idle.read(&mut buf).unwrap_or(usize::MAX);
    assert_eq!(n, 0, "an idle connection was not closed by the daemon");
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    // Oversized: headers that never end are refused once over the cap.
    let mut big = TcpStream::connect(("127.0.0.1", port)).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = big.write_all(b"GET /metrics HTTP/1.1\r\n");
    let line = format!("X-Filler: {}\r\n", "a".repeat(1000));
    for _ in 0..64 {
        if big.write_all(line.as_bytes()).is_err() {
            break;
        }
    }
    let mut answer = String::new();
    let _ = big.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "oversized request answered {answer:?}"
    );
}

/// The world's config with `control_socket` set (a top-level key, so it goes first).
fn with_control_socket(config: &Path, socket: &Path) {
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(
        config,
        format!("control_socket = \"{}\"\n{text}", socket.display()),
    )
    .unwrap();
}

/// Issue 18 item 6: a regular file at `control_socket` was deleted at start (and at stop).
#[test]
fn a_regular_file_at_the_control_socket_path_is_refused_and_kept() {
    let w = World::new(&[]);
    let cfg = w.config(&w.file_cert("f", "\"f.example.test\""));
    let not_a_socket = w.p("precious.txt");
    std::fs::write(&not_a_socket, "operator's notes\n").unwrap();
    with_control_socket(&cfg, &not_a_socket);
    let mut d = w.daemon(&cfg, "daemon.log");
    let exited = until(Duration::from_secs(20), || {
        d.0.try_wait().unwrap().is_some()
    });
    let kept = std::fs::read_to_string(&not_a_socket);
    assert!(
        exited,
        "the daemon started over a regular file at control_socket"
    );
    assert!(!d.0.wait().unwrap().success());
    assert_eq!(
        kept.as_deref().ok(),
        Some("operator's notes\n"),
        "the file at control_socket was touched"
    );
    let log = std::fs::read_to_string(w.p("daemon.log")).unwrap();
    assert!(
        log.contains(&not_a_socket.display().to_string()) && log.contains("not a socket"),
        "the error does not name the path and the problem:\n{log}"
    );
}

/// A directory the unprivileged uid may create sockets in, reachable from `/tmp`.
fn dir_for_other_uid(w: &World, name: &str) -> PathBuf {
    use std::os::unix::fs::{chown, MetadataExt};
    assert!(
        std::fs::metadata("/proc/self").unwrap().uid() == 0,
        "this test switches uid and must run as root"
    );
    std::fs::set_permissions(w.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = w.p(name);
    std::fs::create_dir(&d).unwrap();
    chown(&d, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    d
}

/// The system Python, runnable by any uid (the SDK venv may live under a private home).
fn system_python() -> &'static str {
    let p = "/usr/bin/python3";
    assert!(Path::new(p).exists(), "{p} is needed to act as another uid");
    p
}

/// Issue 18 item 6: while the daemon was stopped, a squatter bound `control_socket` and its fake
/// status was shown as "from the daemon". The squatter here is another uid; the operator's CLI
/// (root) must not believe it, and falls back to the store.
#[test]
fn the_cli_does_not_believe_a_squatter_on_the_control_socket() {
    let w = World::new(&[]);
    let cfg = w.config(&w.file_cert("real", "\"real.example.test\""));
    let squat_dir = dir_for_other_uid(&w, "run");
    let sock = squat_dir.join("control.sock");
    with_control_socket(&cfg, &sock);
    // The squatter answers every line with a fake status naming a certificate "FAKE".
    let fake = r#"{"result":"status","certificates":[{"name":"FAKE","state":"deployed","domains":["evil.test"],"order_id":null,"not_after":null,"next_due":"2030-01-01T00:00:00Z","next_action":"renew","last_error":null,"last_success":null,"instructions":null}]}"#;
    let script = format!(
        "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.bind({sock:?})\ns.listen(8)\nprint('ready',flush=True)\nwhile True:\n  c,_=s.accept()\n  try:\n    c.recv(65536); c.sendall(b'{fake}\\n')\n  except OSError: pass\n  c.close()\n",
        sock = sock.display().to_string(),
    );
    let mut squatter = Command::new(system_python());
    squatter
        .args(["-c", &script])
        .uid(OTHER_UID)
        .gid(OTHER_UID)
        .stdout(Stdio::piped());
    let mut squatter = Proc(squatter.spawn().unwrap());
    let mut ready = String::new();
    BufReader::new(squatter.0.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");

    let o = output_within(
        &mut cli(&cfg, &["status", "--json"]),
        Duration::from_secs(20),
    )
    .expect("status hung");
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(
        !out.contains("FAKE"),
        "the squatter's status was shown:\n{out}"
    );
    assert!(
        err.contains(&format!("uid {OTHER_UID}")),
        "the CLI did not say whom it refused: {err}"
    );
    // `renew` does not take the squatter's word either: it marks the store instead.
    let o = output_within(&mut cli(&cfg, &["renew", "real"]), Duration::from_secs(20))
        .expect("renew hung");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("no daemon running"),
        "renew believed the squatter: {o:?}"
    );
}

/// Issue 18 item 6: the daemon serves root and its own uid only. The socket is made reachable
/// (mode 0666) so that the peer check, not the file mode, is what refuses the other uid.
#[test]
fn the_daemon_answers_only_root_and_its_own_user() {
    let w = World::new(&[]);
    let cfg = w.config(&w.file_cert("own", "\"own.example.test\""));
    let dir = dir_for_other_uid(&w, "run");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.join("control.sock");
    with_control_socket(&cfg, &sock);
    let _d = w.daemon(&cfg, "daemon.log");
    assert!(
        until(Duration::from_secs(20), || UnixStream::connect(&sock)
            .is_ok()),
        "control socket never came up"
    );
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    // The daemon answers a refused peer at once and hangs up, so the request may meet a
    // closed socket: the script still reads the answer.
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_UNIX)\ns.settimeout(10)\ns.connect({p:?})\ntry:\n  s.sendall(b'{{\"cmd\":\"status\"}}\\n')\nexcept OSError: pass\nprint(s.makefile().readline(),end='')\n",
        p = sock.display().to_string()
    );
    let o = output_within(
        Command::new(system_python())
            .args(["-c", &script])
            .uid(OTHER_UID)
            .gid(OTHER_UID),
        Duration::from_secs(20),
    )
    .expect("the other uid's request hung");
    let answer = String::from_utf8_lossy(&o.stdout);
    assert!(
        !answer.contains("\"certificates\""),
        "uid {OTHER_UID} was served a status: {answer}"
    );
    assert!(
        answer.contains("\"error\"") && answer.contains(&format!("uid {OTHER_UID}")),
        "no refusal naming the uid: {answer:?} {o:?}"
    );
    // Root still is served.
    let o = output_within(&mut cli(&cfg, &["status"]), Duration::from_secs(20)).unwrap();
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("from the daemon"),
        "{o:?}"
    );
}

/// Issue 18 item 6: request lines are bounded. A long line gets an error, and a line that never
/// ends is not buffered without limit: the daemon answers and hangs up.
#[test]
fn oversized_control_requests_are_refused() {
    let w = World::new(&[]);
    let cfg = w.config(&w.file_cert("big", "\"big.example.test\""));
    let sock = w.p("state/control.sock");
    let _d = w.daemon(&cfg, "daemon.log");
    assert!(
        until(Duration::from_secs(20), || UnixStream::connect(&sock)
            .is_ok()),
        "control socket never came up"
    );
    let ask = |payload: Vec<u8>| -> String {
        let s = UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut wr = s.try_clone().unwrap();
        // Written from a thread: the daemon may hang up before taking it all.
        let writer = std::thread::spawn(move || {
            let _ = wr.write_all(&payload);
        });
        let mut line = String::new();
        let _ = BufReader::new(s).read_line(&mut line);
        let _ = writer.join();
        line
    };
    // A well-formed request, 8 KiB long.
    let long = format!(
        "{{\"cmd\":\"renew\",\"name\":\"{}\"}}\n",
        "n".repeat(8 * 1024)
    );
    let a = ask(long.into_bytes());
    assert!(
        a.contains("\"error\"") && a.contains("longer than 4096 bytes"),
        "long request answered {a:?}"
    );
    // 1 MiB and no newline.
    let a = ask(vec![b'x'; 1 << 20]);
    assert!(
        a.contains("longer than 4096 bytes"),
        "endless request answered {a:?}"
    );
    // The daemon still serves a normal request.
    let o = output_within(&mut cli(&cfg, &["status"]), Duration::from_secs(20)).unwrap();
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("from the daemon"),
        "{o:?}"
    );
}
