//! A tile-grid map of Japan: one square per prefecture, placed roughly
//! where it lies (column to the east, row to the south), so the map needs
//! no geographic data or tiles.

use serde::Serialize;
use tsunagu_engine::catalog::prefectures::PREFECTURES;

/// (JIS X 0401 code, column, row).
const TILES: [(u8, u8, u8); 47] = [
    (1, 12, 0),
    (2, 12, 2),
    (3, 12, 3),
    (4, 12, 4),
    (5, 11, 3),
    (6, 11, 4),
    (7, 12, 5),
    (8, 11, 6),
    (9, 11, 5),
    (10, 10, 5),
    (11, 10, 6),
    (12, 11, 7),
    (13, 10, 7),
    (14, 10, 8),
    (15, 10, 4),
    (16, 8, 5),
    (17, 7, 5),
    (18, 7, 6),
    (19, 9, 6),
    (20, 9, 5),
    (21, 8, 6),
    (22, 9, 7),
    (23, 8, 7),
    (24, 7, 7),
    (25, 6, 7),
    (26, 6, 6),
    (27, 5, 7),
    (28, 5, 6),
    (29, 5, 8),
    (30, 6, 8),
    (31, 4, 6),
    (32, 3, 6),
    (33, 4, 7),
    (34, 3, 7),
    (35, 2, 7),
    (36, 4, 9),
    (37, 4, 8),
    (38, 3, 8),
    (39, 3, 9),
    (40, 1, 8),
    (41, 0, 8),
    (42, 0, 9),
    (43, 1, 9),
    (44, 2, 8),
    (45, 2, 9),
    (46, 1, 10),
    (47, 0, 11),
];

/// One prefecture's tile.
#[derive(Debug, Serialize)]
pub struct Tile {
    pub code: u8,
    pub en: &'static str,
    pub ja: &'static str,
    pub x: u8,
    pub y: u8,
}

/// The 47 tiles, in code order.
pub fn tiles() -> Vec<Tile> {
    PREFECTURES
        .iter()
        .zip(TILES)
        .map(|(&(code, en, ja, _), (c, x, y))| {
            debug_assert_eq!(code, c);
            Tile { code, en, ja, x, y }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tile_per_prefecture_and_no_two_on_one_square() {
        let tiles = tiles();
        assert_eq!(tiles.len(), 47);
        for (i, (code, ..)) in TILES.iter().enumerate() {
            assert_eq!(*code as usize, i + 1);
        }
        let mut squares: Vec<_> = tiles.iter().map(|t| (t.x, t.y)).collect();
        squares.sort();
        squares.dedup();
        assert_eq!(squares.len(), 47);
    }
}
