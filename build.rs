//! Embeds the widget, its on-demand parts and its pages (`widget/imagechat.js`,
//! `widget/lazy/*.js`, `widget/pages/*`) into the binary, so running the
//! product needs nothing but the binary.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("widget");
    println!("cargo:rerun-if-changed=widget/imagechat.js");
    println!("cargo:rerun-if-changed=widget/pages");
    println!("cargo:rerun-if-changed=widget/lazy");
    let mut files = Vec::new();
    let js = root.join("imagechat.js");
    if js.is_file() {
        files.push(("imagechat.js".to_owned(), js));
    }
    for folder in ["pages", "lazy"] {
        let Ok(dir) = std::fs::read_dir(root.join(folder)) else {
            continue;
        };
        let mut found: Vec<_> = dir
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        for p in found {
            if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                files.push((format!("{folder}/{name}"), p.clone()));
            }
        }
    }
    let mut out = String::from("/// Files embedded from `widget/` at build time.\npub static EMBEDDED: &[(&str, &[u8])] = &[\n");
    for (name, path) in files {
        let _ = writeln!(
            out,
            "    ({name:?}, include_bytes!({:?})),",
            path.display().to_string()
        );
    }
    out.push_str("];\n");
    let dest =
        Path::new(&std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into())).join("assets.rs");
    if let Err(e) = std::fs::write(&dest, out) {
        panic!("cannot write {}: {e}", dest.display());
    }
}
