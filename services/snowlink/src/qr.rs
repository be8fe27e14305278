//! QR codes of short URLs, as PNG or SVG. The matrix comes from the
//! `qrcode` crate; PNG bytes from the `png` crate.

use qrcode::{Color, EcLevel, QrCode};

/// Smallest and largest image side accepted, in pixels.
pub const MIN_SIZE: u32 = 64;
pub const MAX_SIZE: u32 = 2048;
pub const DEFAULT_SIZE: u32 = 256;
/// Light modules around the code, as the standard asks for.
const QUIET_ZONE: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Svg,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "png" => Some(Self::Png),
            "svg" => Some(Self::Svg),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Svg => "image/svg+xml",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QrError {
    #[error("the text is too long for a QR code: {0}")]
    TooLong(#[from] qrcode::types::QrError),
    #[error("encoding the PNG: {0}")]
    Png(#[from] png::EncodingError),
}

/// A QR code of `text`, about `size` pixels square (whole pixels per module,
/// so never larger than `size`, and never smaller than one pixel a module).
pub fn render(text: &str, format: Format, size: u32) -> Result<Vec<u8>, QrError> {
    // Medium error correction: readable when a quarter is smudged, still a
    // small code for a short URL.
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)?;
    let modules = code.width() as u32 + 2 * QUIET_ZONE;
    let scale = (size / modules).max(1);
    match format {
        Format::Svg => Ok(code
            .render::<qrcode::render::svg::Color>()
            .quiet_zone(true)
            .module_dimensions(scale, scale)
            .build()
            .into_bytes()),
        Format::Png => png_bytes(&code, scale),
    }
}

fn png_bytes(code: &QrCode, scale: u32) -> Result<Vec<u8>, QrError> {
    let width = code.width() as u32;
    let side = (width + 2 * QUIET_ZONE) * scale;
    let colors = code.to_colors();
    let mut pixels = vec![255u8; (side * side) as usize];
    for (i, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let (mx, my) = (i as u32 % width, i as u32 / width);
        let (x0, y0) = ((mx + QUIET_ZONE) * scale, (my + QUIET_ZONE) * scale);
        for y in y0..y0 + scale {
            let row = (y * side) as usize;
            pixels[row + x0 as usize..row + (x0 + scale) as usize].fill(0);
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&pixels)?;
    writer.finish()?;
    Ok(out)
}
