//! Charts drawn on the server as inline SVG: a KPI sparkline, jobs by outcome
//! per hour, and durations per provider. Only numbers and escaped labels go
//! into the markup, so the result is safe to embed as is. Coordinates are
//! floats (they only place pixels); the values shown stay exact decimals.

use std::fmt::Write;

use minijinja::Value;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A 30-day line of a KPI (`None`: no number that day), with a text
/// alternative. Empty when there is no number at all.
pub fn sparkline(values: &[Option<Decimal>], summary: &str) -> Option<Value> {
    let known: Vec<f64> = values.iter().flatten().filter_map(|v| v.to_f64()).collect();
    if known.is_empty() {
        return None;
    }
    let (w, h, pad) = (240.0_f64, 48.0_f64, 3.0_f64);
    let max = known.iter().copied().fold(f64::MIN, f64::max);
    let min = known.iter().copied().fold(f64::MAX, f64::min).min(0.0);
    let span = if (max - min).abs() < f64::EPSILON {
        1.0
    } else {
        max - min
    };
    let step = if values.len() > 1 {
        (w - 2.0 * pad) / (values.len() - 1) as f64
    } else {
        0.0
    };
    let mut path = String::new();
    let mut pen_down = false;
    let mut last = None;
    for (i, v) in values.iter().enumerate() {
        match v.and_then(|v| v.to_f64()) {
            Some(v) => {
                let x = pad + step * i as f64;
                let y = h - pad - (v - min) / span * (h - 2.0 * pad);
                let _ = write!(path, "{}{x:.1},{y:.1} ", if pen_down { "L" } else { "M" });
                pen_down = true;
                last = Some((x, y));
            }
            None => pen_down = false,
        }
    }
    let dot = last
        .map(|(x, y)| format!(r##"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="#1d4ed8"/>"##))
        .unwrap_or_default();
    let label = escape(summary);
    Some(Value::from_safe_string(format!(
        r##"<svg class="spark" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{label}" preserveAspectRatio="none"><title>{label}</title><path d="{}" fill="none" stroke="#1d4ed8" stroke-width="2" stroke-linejoin="round" stroke-linecap="round"/>{dot}</svg>"##,
        path.trim_end()
    )))
}

/// One series of a stacked bar chart: its name, colour and a value per bar.
pub struct Series<'a> {
    pub name: &'a str,
    pub colour: &'a str,
    pub values: Vec<u64>,
}

/// Stacked bars (one per label), a legend, and a text alternative.
pub fn stacked_bars(labels: &[String], series: &[Series<'_>], summary: &str) -> Value {
    let (w, h, left, bottom, top) = (720.0_f64, 200.0_f64, 32.0_f64, 22.0_f64, 8.0_f64);
    let totals: Vec<u64> = (0..labels.len())
        .map(|i| {
            series
                .iter()
                .map(|s| s.values.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1) as f64;
    let slot = (w - left) / labels.len().max(1) as f64;
    let bar = (slot * 0.7).max(1.0);
    let plot = h - bottom - top;
    let mut svg = String::new();
    let label = escape(summary);
    let _ = write!(
        svg,
        r##"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{label}"><title>{label}</title>"##
    );
    let _ = write!(
        svg,
        r##"<text x="2" y="{:.0}" class="axis">{}</text><text x="2" y="{:.0}" class="axis">0</text>"##,
        top + 10.0,
        max as u64,
        h - bottom
    );
    for (i, name) in labels.iter().enumerate() {
        let x = left + slot * i as f64 + (slot - bar) / 2.0;
        let mut y = h - bottom;
        for s in series {
            let v = s.values.get(i).copied().unwrap_or(0);
            if v == 0 {
                continue;
            }
            let bh = v as f64 / max * plot;
            y -= bh;
            let _ = write!(
                svg,
                r##"<rect x="{x:.1}" y="{y:.1}" width="{bar:.1}" height="{bh:.1}" fill="{}"><title>{}: {v} {}</title></rect>"##,
                s.colour,
                escape(name),
                escape(s.name)
            );
        }
        if i % 3 == 0 {
            let _ = write!(
                svg,
                r##"<text x="{:.1}" y="{:.0}" class="axis" text-anchor="middle">{}</text>"##,
                x + bar / 2.0,
                h - 6.0,
                escape(name)
            );
        }
    }
    svg.push_str("</svg>");
    Value::from_safe_string(svg)
}

/// Horizontal bars of p50 and p95 durations (seconds) per name.
pub fn duration_bars(rows: &[(String, Option<f64>, Option<f64>)], summary: &str) -> Value {
    let row_h = 34.0_f64;
    let (w, left) = (720.0_f64, 110.0_f64);
    let h = (rows.len().max(1) as f64) * row_h + 8.0;
    let max = rows
        .iter()
        .filter_map(|r| r.2.or(r.1))
        .fold(0.0_f64, f64::max)
        .max(0.001);
    let label = escape(summary);
    let mut svg = format!(
        r##"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{label}"><title>{label}</title>"##
    );
    for (i, (name, p50, p95)) in rows.iter().enumerate() {
        let y = 4.0 + row_h * i as f64;
        let _ = write!(
            svg,
            r##"<text x="0" y="{:.0}" class="axis">{}</text>"##,
            y + 20.0,
            escape(name)
        );
        if p50.is_none() && p95.is_none() {
            let _ = write!(
                svg,
                r##"<text x="{left}" y="{:.0}" class="axis">no finished jobs</text>"##,
                y + 20.0
            );
        }
        for (k, (value, colour, what)) in [(p50, "#1d4ed8", "p50"), (p95, "#93c5fd", "p95")]
            .into_iter()
            .enumerate()
        {
            let Some(v) = value else { continue };
            let bw = (v / max * (w - left - 90.0)).max(1.0);
            let by = y + 3.0 + 13.0 * k as f64;
            let _ = write!(
                svg,
                r##"<rect x="{left}" y="{by:.0}" width="{bw:.1}" height="11" fill="{colour}"><title>{} {what}: {}</title></rect><text x="{:.1}" y="{:.0}" class="axis">{what} {}</text>"##,
                escape(name),
                seconds(*v),
                left + bw + 4.0,
                by + 10.0,
                seconds(*v)
            );
        }
    }
    svg.push_str("</svg>");
    Value::from_safe_string(svg)
}

/// "0.8 s", "12 s", "3.5 min".
pub fn seconds(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.1} s")
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else {
        format!("{:.1} min", s / 60.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparkline_breaks_where_days_have_no_number() {
        let values = [
            Some(Decimal::from(3)),
            None,
            Some(Decimal::from(5)),
            Some(Decimal::from(4)),
        ];
        let svg = sparkline(&values, "Sessions <30 days>")
            .unwrap()
            .to_string();
        assert_eq!(svg.matches('M').count(), 2, "{svg}");
        assert!(svg.contains("Sessions &lt;30 days&gt;"));
        assert!(!svg.contains("<30"));
        assert!(sparkline(&[None, None], "x").is_none());
    }

    #[test]
    fn labels_in_charts_are_escaped() {
        let svg = stacked_bars(
            &["<b>".into()],
            &[Series {
                name: "a\"b",
                colour: "#000",
                values: vec![2],
            }],
            "jobs",
        )
        .to_string();
        assert!(svg.contains("&lt;b&gt;") && svg.contains("a&quot;b"));
        let svg = duration_bars(&[("<x>".into(), Some(1.0), Some(2.0))], "d").to_string();
        assert!(svg.contains("&lt;x&gt;") && svg.contains("p95 2.0 s"));
    }
}
