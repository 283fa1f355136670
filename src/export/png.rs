//! Heatmaps as PNG, for documents that take no SVG: the SVG the service draws, rasterised by
//! resvg with the machine's fonts (text is left out where it has none).

use std::sync::OnceLock;

use resvg::{tiny_skia, usvg};

use super::Error;

/// The system's fonts, loaded once.
fn fonts() -> &'static std::sync::Arc<usvg::fontdb::Database> {
    static FONTS: OnceLock<std::sync::Arc<usvg::fontdb::Database>> = OnceLock::new();
    FONTS.get_or_init(|| {
        let mut db = usvg::fontdb::Database::new();
        db.load_system_fonts();
        // The heatmaps ask for `sans-serif`: the first of the usual sans faces found, else any.
        let families: Vec<String> = db
            .faces()
            .filter_map(|f| f.families.first().map(|(name, _)| name.clone()))
            .collect();
        let sans = [
            "DejaVu Sans",
            "Liberation Sans",
            "Noto Sans",
            "FreeSans",
            "Arial",
        ]
        .into_iter()
        .find(|want| families.iter().any(|f| f == want))
        .map(str::to_string)
        .or_else(|| families.first().cloned());
        if let Some(family) = sans {
            db.set_sans_serif_family(family);
        }
        std::sync::Arc::new(db)
    })
}

/// `svg` rasterised at its own size.
pub fn from_svg(svg: &[u8]) -> Result<Vec<u8>, Error> {
    let options = usvg::Options {
        fontdb: fonts().clone(),
        ..usvg::Options::default()
    };
    let tree = usvg::Tree::from_data(svg, &options)
        .map_err(|e| Error::Request(format!("a heatmap does not parse as SVG: {e}")))?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| Error::Request("a heatmap has no size".to_string()))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap
        .encode_png()
        .map_err(|e| Error::Request(format!("cannot encode a PNG: {e}")))
}
