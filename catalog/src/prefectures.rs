//! Japan's 47 prefectures: JIS X 0401 code, names and population (2020
//! census, thousands, rounded): the reference a store's coverage is
//! compared with, and the weights of the synthetic store's prefectures.

/// (JIS X 0401 code, English name, Japanese name, population in thousands).
pub const PREFECTURES: [(u8, &str, &str, u32); 47] = [
    (1, "Hokkaido", "北海道", 5225),
    (2, "Aomori", "青森県", 1238),
    (3, "Iwate", "岩手県", 1211),
    (4, "Miyagi", "宮城県", 2302),
    (5, "Akita", "秋田県", 960),
    (6, "Yamagata", "山形県", 1068),
    (7, "Fukushima", "福島県", 1833),
    (8, "Ibaraki", "茨城県", 2867),
    (9, "Tochigi", "栃木県", 1933),
    (10, "Gunma", "群馬県", 1939),
    (11, "Saitama", "埼玉県", 7345),
    (12, "Chiba", "千葉県", 6284),
    (13, "Tokyo", "東京都", 14048),
    (14, "Kanagawa", "神奈川県", 9237),
    (15, "Niigata", "新潟県", 2201),
    (16, "Toyama", "富山県", 1035),
    (17, "Ishikawa", "石川県", 1133),
    (18, "Fukui", "福井県", 767),
    (19, "Yamanashi", "山梨県", 810),
    (20, "Nagano", "長野県", 2048),
    (21, "Gifu", "岐阜県", 1979),
    (22, "Shizuoka", "静岡県", 3633),
    (23, "Aichi", "愛知県", 7542),
    (24, "Mie", "三重県", 1770),
    (25, "Shiga", "滋賀県", 1414),
    (26, "Kyoto", "京都府", 2578),
    (27, "Osaka", "大阪府", 8838),
    (28, "Hyogo", "兵庫県", 5465),
    (29, "Nara", "奈良県", 1324),
    (30, "Wakayama", "和歌山県", 923),
    (31, "Tottori", "鳥取県", 553),
    (32, "Shimane", "島根県", 671),
    (33, "Okayama", "岡山県", 1888),
    (34, "Hiroshima", "広島県", 2800),
    (35, "Yamaguchi", "山口県", 1342),
    (36, "Tokushima", "徳島県", 720),
    (37, "Kagawa", "香川県", 950),
    (38, "Ehime", "愛媛県", 1335),
    (39, "Kochi", "高知県", 692),
    (40, "Fukuoka", "福岡県", 5135),
    (41, "Saga", "佐賀県", 811),
    (42, "Nagasaki", "長崎県", 1312),
    (43, "Kumamoto", "熊本県", 1738),
    (44, "Oita", "大分県", 1124),
    (45, "Miyazaki", "宮崎県", 1070),
    (46, "Kagoshima", "鹿児島県", 1588),
    (47, "Okinawa", "沖縄県", 1467),
];

/// Japan's population in thousands: the sum over the prefectures.
pub fn total() -> u32 {
    PREFECTURES.iter().map(|p| p.3).sum()
}

/// The prefecture at a point `x` in `[0, total())` of the population, in
/// code order: a uniform `x` picks prefectures in proportion to population.
pub fn at(x: u32) -> u8 {
    let mut acc = 0;
    for (code, _, _, pop) in PREFECTURES {
        acc += pop;
        if x < acc {
            return code;
        }
    }
    47
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_is_japan() {
        assert_eq!(PREFECTURES.len(), 47);
        assert!(
            PREFECTURES
                .iter()
                .enumerate()
                .all(|(i, p)| p.0 as usize == i + 1)
        );
        // About 126 million in 2020.
        assert!((125_000..127_500).contains(&total()), "{}", total());
        assert_eq!(at(0), 1);
        assert_eq!(at(total() - 1), 47);
        assert_eq!(at(5225), 2);
    }
}
