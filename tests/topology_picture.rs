//! `topology.svg` is a picture of the lab, and a picture can go stale without anyone noticing.
//! These tests keep it honest: it must be well-formed SVG, and the ports it names must be
//! exactly the defaults of the command line. Those are read from the clap definition, not
//! copied here, so changing a default without redrawing the picture fails a test.

use std::collections::BTreeSet;

use clap::CommandFactory;
use gclab::args::Gclab;

const SVG_NAMESPACE: &str = "http://www.w3.org/2000/svg";

fn picture() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/topology.svg");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// What a reader of the picture sees: each `<text>` element's words, its `<tspan>`s
/// included, one element per line.
fn visible_text(svg: &str) -> String {
    let document = roxmltree::Document::parse(svg).expect("the picture is well-formed XML");
    document
        .descendants()
        .filter(|node| node.has_tag_name((SVG_NAMESPACE, "text")))
        .map(|text| {
            text.descendants()
                .filter(|node| node.is_text())
                .filter_map(|node| node.text())
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every port the text names, written as `:8080`: a colon followed by digits.
fn ports_named_in(text: &str) -> BTreeSet<u32> {
    text.split(':')
        .skip(1) // what comes before the first colon follows no colon
        .filter_map(|after_colon| {
            let digits: String = after_colon
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            // Too many digits for a u32 is certainly not a default port: report it as one
            // that is not.
            (!digits.is_empty()).then(|| digits.parse().unwrap_or(u32::MAX))
        })
        .collect()
}

/// The default value of `gclab <subcommand> --<arg>`, as clap would fill it in.
fn default_of(subcommand: &str, arg: &str) -> String {
    let command = Gclab::command();
    let subcommand = command
        .get_subcommands()
        .find(|s| s.get_name() == subcommand)
        .unwrap_or_else(|| panic!("gclab has no subcommand {subcommand}"));
    let arg = subcommand
        .get_arguments()
        .find(|a| a.get_id() == arg)
        .unwrap_or_else(|| panic!("gclab {} has no --{arg}", subcommand.get_name()));
    arg.get_default_values()
        .iter()
        .map(|value| value.to_str().expect("our defaults are written in UTF-8"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The ports the lab listens on when started with no flags: the dbserver's, each frontend's
/// peer (tarpc) port, and each frontend's HTTP port, which is its peer port + 1000.
fn default_ports() -> BTreeSet<u32> {
    let db_addr = default_of("dbserver", "addr");
    let db_port = db_addr
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("dbserver --addr defaults to {db_addr:?}, not host:port"));

    let http_port_help = Gclab::command()
        .find_subcommand("frontend")
        .and_then(|frontend| frontend.get_arguments().find(|a| a.get_id() == "http_port"))
        .and_then(|http_port| http_port.get_help())
        .map(|help| help.to_string())
        .expect("gclab frontend documents --http-port");
    assert!(
        http_port_help.contains("--port + 1000"),
        "--http-port no longer defaults to --port + 1000 ({http_port_help:?}): \
         redraw topology.svg and update this test"
    );

    let peers = default_of("frontend", "peers");
    let peer_ports: Vec<u32> = peers
        .split(',')
        .map(|port| {
            port.parse()
                .unwrap_or_else(|_| panic!("frontend --peers defaults to {peers:?}, not ports"))
        })
        .collect();

    let mut ports = BTreeSet::from([db_port]);
    for port in peer_ports {
        ports.insert(port);
        ports.insert(port + 1000);
    }
    ports
}

#[test]
fn the_picture_is_well_formed_svg() {
    let svg = picture();
    let document = roxmltree::Document::parse(&svg).expect("the picture is well-formed XML");
    let root = document.root_element();
    assert!(
        root.has_tag_name((SVG_NAMESPACE, "svg")),
        "the root element is <{}> in namespace {:?}, not <svg> in {SVG_NAMESPACE}",
        root.tag_name().name(),
        root.tag_name().namespace()
    );
    let view_box = root
        .attribute("viewBox")
        .expect("the picture has a viewBox, so it scales");
    let numbers: Vec<f64> = view_box
        .split([' ', ','])
        .filter(|part| !part.is_empty())
        .map(|part| part.parse().expect("a viewBox holds numbers"))
        .collect();
    assert_eq!(
        numbers.len(),
        4,
        "viewBox {view_box:?} is not x y width height"
    );
    assert!(
        numbers[2] > 0.0 && numbers[3] > 0.0,
        "viewBox {view_box:?} has no area"
    );
}

#[test]
fn the_picture_names_the_default_ports_and_no_others() {
    let text = visible_text(&picture());
    let defaults = default_ports();
    assert_eq!(
        defaults.len(),
        7,
        "expected the dbserver and three frontends' two ports each, got {defaults:?}"
    );
    for port in &defaults {
        assert!(
            text.contains(&format!(":{port}")),
            "the picture never names :{port}, a default port"
        );
    }
    let strays: BTreeSet<u32> = ports_named_in(&text)
        .difference(&defaults)
        .copied()
        .collect();
    assert!(
        strays.is_empty(),
        "the picture names ports that are not defaults: {strays:?} (the defaults are {defaults:?})"
    );
}

#[test]
fn the_picture_names_both_protocols() {
    let text = visible_text(&picture());
    for protocol in ["tarpc", "HTTP"] {
        assert!(text.contains(protocol), "the picture never says {protocol}");
    }
}

#[test]
fn the_picture_draws_the_change_stream_and_names_its_switch() {
    let svg = picture();
    let text = visible_text(&svg);
    for words in ["GET /changes", "--follow-changes"] {
        assert!(text.contains(words), "the picture never says {words}");
    }
    // The switch it names is one the frontend really has.
    let frontend = Gclab::command();
    let frontend = frontend.find_subcommand("frontend").unwrap();
    assert!(frontend
        .get_arguments()
        .any(|a| a.get_long() == Some("follow-changes")));
    let document = roxmltree::Document::parse(&svg).unwrap();
    let arrows = document
        .descendants()
        .filter(|n| n.attribute("class") == Some("stream"))
        .count();
    assert!(arrows >= 2, "the stream arrow and its key in the legend");
}

#[test]
fn ports_are_found_after_a_colon_only() {
    assert_eq!(
        ports_named_in("HTTP :9001 · 127.0.0.1:8002 · source: peer · 300 ms"),
        BTreeSet::from([9001, 8002])
    );
}

#[test]
fn the_picture_renders_to_a_png_800_pixels_wide() {
    if std::process::Command::new("rsvg-convert")
        .arg("--version")
        .output()
        .is_err()
    {
        // CI installs librsvg2-bin (.ci/run), so there this test always runs.
        assert!(
            std::env::var_os("CI").is_none(),
            "rsvg-convert is not installed on CI"
        );
        eprintln!("SKIPPED: rsvg-convert is not installed (apt-get install librsvg2-bin)");
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let png = out.path().join("topology.png");
    let svg = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("topology.svg");
    let rendered = std::process::Command::new("rsvg-convert")
        .args(["-w", "800", "-o"])
        .arg(&png)
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    assert_eq!(width, 800);
}
