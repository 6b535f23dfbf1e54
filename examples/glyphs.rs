fn main() {
    let p = std::env::args().nth(1).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    let mut d = neuralflow_swarm::pdf::Document::load(&bytes).unwrap();
    let g = d.page_glyphs(1);
    println!("{} glyphs err {:?}", g.glyphs.len(), g.error);
    for gl in g.glyphs.iter().take(20) {
        println!("{:?}", gl);
    }
}
