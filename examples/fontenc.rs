fn main() {
    let p = std::env::args().nth(1).unwrap();
    let id: u32 = std::env::args().nth(2).unwrap().parse().unwrap();
    let doc = lopdf::Document::load(&p).unwrap();
    let f = doc.get_dictionary((id, 0)).unwrap();
    println!("{:?}", f.get(b"Encoding"));
    let fd = doc
        .get_dictionary(f.get(b"FontDescriptor").unwrap().as_reference().unwrap())
        .unwrap();
    let e = neuralflow_swarm::pdf::fontfile::builtin_encoding(&doc, fd);
    println!(
        "{:?}",
        e.map(|v| v.into_iter().take(40).collect::<Vec<_>>())
    );
}
