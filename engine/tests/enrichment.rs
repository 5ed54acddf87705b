//! The enrichment seam: a background refresher replaces the endpoint
//! directory while the pipeline runs, and every record is looked up when
//! it is emitted, in whichever directory the worker holds then.

use std::net::IpAddr;
use std::sync::Arc;

use engine::enrich::{AttributeValue, Directory, Endpoint, EnrichmentView};
use engine::{FlowConfig, FlowRecord, PacketRepr, Pipeline, PipelineConfig, Registry};

const S: u64 = 1_000_000_000;

fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> PacketRepr {
    PacketRepr {
        src_port: sport,
        dst_port: dport,
        ip_bytes: 100,
        ..PacketRepr::new(src.parse().unwrap(), dst.parse().unwrap(), 17)
    }
}

fn pods(pod: &str) -> Directory {
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let mut d = Directory::new();
    d.insert_address(
        ip("10.0.0.1"),
        Arc::new(
            Endpoint::default()
                .with_str("k8s.pod.name", pod)
                .expect("a known name"),
        ),
    );
    d.insert_socket(
        17,
        ip("10.0.0.9"),
        53,
        Arc::new(
            Endpoint::default()
                .with_int("process.pid", 4242)
                .and_then(|e| e.with_str("process.executable.name", "dnsd"))
                .expect("known names"),
        ),
    );
    d
}

fn attribute(r: &FlowRecord, side: usize, name: &str) -> Option<AttributeValue> {
    let e = r.endpoints.as_ref()?[side].as_ref()?;
    e.attributes
        .iter()
        .find(|a| a.name.source.strip_prefix("source.") == Some(name))
        .map(|a| a.value.clone())
}

#[test]
fn a_snapshot_swapped_during_a_run_enriches_the_records_emitted_after_it() {
    for workers in [1, 3] {
        let view = EnrichmentView::new(pods("frontend-1"));
        let (mut pipeline, mut records) = Pipeline::start(PipelineConfig {
            workers,
            flow: FlowConfig::default(),
            host: None,
            registry: Registry::new(),
            enrichment: Some(view.clone()),
            sampler: None,
        });
        // A flow that times out (UDP: 60 s idle) while the first directory
        // is current: wait until its record has come out.
        pipeline
            .push(udp("10.0.0.1", 40000, "10.0.0.9", 53), S)
            .unwrap();
        pipeline
            .push(udp("10.0.0.9", 53, "10.0.0.1", 40000), 2 * S)
            .unwrap();
        pipeline
            .push(udp("192.0.2.1", 1, "192.0.2.2", 2), 100 * S)
            .unwrap();
        pipeline.sync().unwrap();
        let first: Vec<FlowRecord> = records.recv().expect("the timed-out record");
        assert_eq!(first.len(), 1, "{workers} workers");
        let r = &first[0];
        assert_eq!(
            attribute(r, 0, "k8s.pod.name"),
            Some(AttributeValue::Str("frontend-1".into()))
        );
        assert_eq!(
            attribute(r, 1, "process.pid"),
            Some(AttributeValue::Int(4242))
        );
        assert_eq!(
            attribute(r, 1, "process.executable.name"),
            Some(AttributeValue::Str("dnsd".into()))
        );

        // The pod is replaced; the same address's next flow says so.
        view.set(pods("frontend-2"));
        pipeline
            .push(udp("10.0.0.1", 40001, "10.0.0.9", 53), 101 * S)
            .unwrap();
        pipeline.finish().unwrap();
        let rest: Vec<FlowRecord> = records.flatten().collect();
        assert_eq!(rest.len(), 2);
        let second = rest
            .iter()
            .find(|r| r.source_port == 40001)
            .expect("the second flow");
        assert_eq!(
            attribute(second, 0, "k8s.pod.name"),
            Some(AttributeValue::Str("frontend-2".into()))
        );
        // An endpoint the directory does not know stays bare.
        let other = rest.iter().find(|r| r.source_port == 1).expect("other");
        assert_eq!(other.endpoints, None);
    }
}
