//! The iceoryx2 side of `swarm bench bus`: this process publishes stamped messages
//! (`CLOCK_MONOTONIC` ns and an index) to one subscriber process (this program again, with
//! `--subscriber`), which polls and takes each message's one-way time, as our subscribers
//! do. Prints `{"p50": ns, "p99": ns}` as its last line.
//!
//! `iceoryx2_bus [--samples N] [--gap-ns NS]`

use iceoryx2::prelude::*;
use neuralflow_swarm::runtime::bus::monotonic_ns;
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

type Payload = [u64; 2];

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn service(
    node: &Node<ipc::Service>,
    name: &str,
) -> Result<
    iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, Payload, ()>,
    Box<dyn std::error::Error>,
> {
    Ok(node
        .service_builder(&name.try_into()?)
        .publish_subscribe::<Payload>()
        .max_subscribers(4)
        .subscriber_max_buffer_size(64)
        .enable_safe_overflow(true)
        .open_or_create()?)
}

fn subscriber(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let node = NodeBuilder::new().create::<ipc::Service>()?;
    let svc = service(&node, name)?;
    let sub = svc.subscriber_builder().create()?;
    println!("ready");
    std::io::stdout().flush()?;
    let mut times = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    'outer: while Instant::now() < deadline {
        while let Some(sample) = sub.receive()? {
            let [stamp, _index] = *sample;
            if stamp == 0 {
                break 'outer;
            }
            times.push(monotonic_ns().saturating_sub(stamp));
        }
        std::hint::spin_loop();
    }
    times.sort_unstable();
    let q = |p: f64| {
        times
            .get(((times.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{{\"p50\": {}, \"p99\": {}, \"received\": {}}}",
        q(0.5),
        q(0.99),
        times.len()
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--subscriber") {
        return subscriber(args.get(i + 1).ok_or("--subscriber NAME")?);
    }
    let samples = arg(&args, "--samples", 20_000);
    let gap = Duration::from_nanos(arg(&args, "--gap-ns", 20_000));
    let name = format!("neuralflow/bench/{}", std::process::id());
    let node = NodeBuilder::new().create::<ipc::Service>()?;
    let svc = service(&node, &name)?;
    let publisher = svc.publisher_builder().create()?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["--subscriber", &name])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut out = std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    if line.trim() != "ready" {
        return Err(format!("subscriber said {line:?}").into());
    }
    // Let the publisher see the new subscriber before the first sample.
    std::thread::sleep(Duration::from_millis(50));
    let mut next = Instant::now();
    for i in 0..samples {
        next += gap;
        while Instant::now() < next {
            std::hint::spin_loop();
        }
        publisher
            .loan_uninit()?
            .write_payload([monotonic_ns(), i])
            .send()?;
    }
    std::thread::sleep(Duration::from_millis(20));
    publisher.loan_uninit()?.write_payload([0, 0]).send()?;
    let mut last = String::new();
    for l in out.lines() {
        last = l?;
    }
    child.wait()?;
    println!("{last}");
    Ok(())
}
