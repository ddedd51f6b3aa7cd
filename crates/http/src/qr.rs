//! QR codes rendered as PNG and SVG.

use qrcode::{Color, EcLevel, QrCode};

use crate::ApiError;

/// Pixels per QR module in the PNG.
const SCALE: usize = 8;
/// Light modules around the code, as the QR standard asks.
const QUIET_ZONE: usize = 4;

fn encode(text: &str) -> Result<QrCode, ApiError> {
    QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L)
        .map_err(|e| ApiError::internal(&e))
}

/// A greyscale PNG of the QR code for `text`.
pub(crate) fn png(text: &str) -> Result<Vec<u8>, ApiError> {
    let code = encode(text)?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_ZONE) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color == Color::Dark {
            let (mx, my) = (i % modules + QUIET_ZONE, i / modules + QUIET_ZONE);
            for y in my * SCALE..(my + 1) * SCALE {
                pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
            }
        }
    }
    let mut out = Vec::new();
    let side32 = u32::try_from(side).map_err(|e| ApiError::internal(&e))?;
    let mut encoder = png::Encoder::new(&mut out, side32, side32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| ApiError::internal(&e))?;
    writer
        .write_image_data(&pixels)
        .map_err(|e| ApiError::internal(&e))?;
    writer.finish().map_err(|e| ApiError::internal(&e))?;
    Ok(out)
}

/// An SVG of the QR code for `text`.
pub(crate) fn svg(text: &str) -> Result<String, ApiError> {
    let code = encode(text)?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_and_svg_are_well_formed() {
        let text = "2@abcdef0123456789,wagate-fake";
        let png = png(text).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = ::png::Decoder::new(std::io::Cursor::new(png));
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        assert_eq!(info.width, info.height);
        assert_eq!(info.width as usize % SCALE, 0);
        let svg = svg(text).unwrap();
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
    }
}
