//! The shipped data files with their SHA-256, and the readers: plain and gzip CSV, PeMSD8's
//! edge list, ASTGCN's `PEMS08.npz`.

use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::str::FromStr;

use super::DataError;
use crate::digest::sha256_hex;

/// A file shipped in the data folder, with the SHA-256 it must have (the values listed in
/// `data/README.md`).
pub(super) struct Shipped {
    pub(super) rel: &'static str,
    pub(super) sha256: &'static str,
    pub(super) what: &'static str,
}

pub(super) const PEMSD7_STATIONS: Shipped = Shipped {
    rel: "pemsd7/PeMSD7_M_Station_Info.csv",
    sha256: "5a9744215880f2ec1a5b3efdbd6ee662eb1533b9b3d68924d85f5e45c28a02fe",
    what: "PeMSD7 station table",
};
pub(super) const PEMSD7_DISTANCES: Shipped = Shipped {
    rel: "pemsd7/W_228.csv",
    sha256: "c558c602b7937fb3ecb3835938fe8f61a34efa4c51e0ae3f61ed93ecc680060e",
    what: "PeMSD7 distance matrix",
};
pub(super) const PEMSD7_SPEEDS: Shipped = Shipped {
    rel: "pemsd7/V_228.csv.gz",
    sha256: "fba013791fda8ba14a8760a90541c613ed91cb3d2f8d1ebcd9391c92d63e3cb7",
    what: "PeMSD7 speed file",
};
pub(super) const PEMSD8_EDGES: Shipped = Shipped {
    rel: "pemsd8/distance.csv",
    sha256: "859d68e7583ed4e6016588eaaca494d3ece286dae361614c5c1833017f87eaa7",
    what: "PeMSD8 edge list",
};
pub(super) const PEMSD8_PARTIAL: Shipped = Shipped {
    rel: "pemsd8/PEMS08_speed_PARTIAL_first1282.csv.gz",
    sha256: "6132cfd05ae62a25ab8fea38258d9e5f073fc3e854ab3a158cd9d2f1d9cf5f6e",
    what: "PeMSD8 partial speed file",
};
/// CRC-32 of the member `data.npy` of ASTGCN's original `PEMS08.npz`.
pub(super) const PEMS08_NPY_CRC32: u32 = 0xf2e8_6247;

pub(super) fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, DataError> {
    fs::read(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => DataError::NotFound {
            path: path.to_path_buf(),
            what: what.to_string(),
        },
        _ => DataError::Io {
            path: path.to_path_buf(),
            source: e,
        },
    })
}

/// Read a shipped file and check its SHA-256; returns the bytes and the hex digest.
pub(super) fn read_verified(dir: &Path, f: &Shipped) -> Result<(Vec<u8>, String), DataError> {
    let path = dir.join(f.rel);
    let bytes = read_file(&path, f.what)?;
    let actual = sha256_hex(&bytes);
    if actual != f.sha256 {
        return Err(DataError::Checksum {
            path,
            expected: f.sha256.to_string(),
            actual,
        });
    }
    Ok((bytes, actual))
}

pub(super) fn utf8<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a str, DataError> {
    std::str::from_utf8(bytes).map_err(|e| DataError::Format {
        path: path.to_path_buf(),
        msg: format!("not UTF-8 text: {e}"),
    })
}

pub(super) fn gunzip(path: &Path, bytes: &[u8]) -> Result<String, DataError> {
    let mut s = String::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_string(&mut s)
        .map_err(|e| DataError::Format {
            path: path.to_path_buf(),
            msg: format!("cannot decompress as gzip text: {e}"),
        })?;
    Ok(s)
}

/// Parse a CSV of numbers with exactly `cols` fields per line (empty field = NaN). Returns the
/// values row-major and the number of data rows.
pub(super) fn parse_csv<T>(
    path: &Path,
    text: &str,
    cols: usize,
    header: bool,
) -> Result<(Vec<T>, usize), DataError>
where
    T: FromStr + Float,
{
    let mut out = Vec::with_capacity(text.len() / 4);
    let mut rows = 0;
    let csv_err = |line: usize, column: usize, msg: String| DataError::Csv {
        path: path.to_path_buf(),
        line,
        column,
        msg,
    };
    for (i, line) in text.lines().enumerate().skip(usize::from(header)) {
        let mut k = 0;
        for field in line.split(',') {
            if k == cols {
                return Err(csv_err(
                    i + 1,
                    k + 1,
                    format!("expected {cols} fields, found more"),
                ));
            }
            let f = field.trim();
            let v = if f.is_empty() {
                T::NAN
            } else {
                f.parse::<T>()
                    .map_err(|_| csv_err(i + 1, k + 1, format!("cannot parse {f:?} as a number")))?
            };
            out.push(v);
            k += 1;
        }
        if k != cols {
            return Err(csv_err(
                i + 1,
                k + 1,
                format!("expected {cols} fields, found {k}"),
            ));
        }
        rows += 1;
    }
    Ok((out, rows))
}

/// The float types `parse_csv` produces.
pub(super) trait Float: Copy {
    const NAN: Self;
}
impl Float for f32 {
    const NAN: Self = f32::NAN;
}
impl Float for f64 {
    const NAN: Self = f64::NAN;
}

/// PeMSD8 `distance.csv` (`from,to,cost`, cost in metres) → symmetric `[n, n]` km matrix with
/// `INFINITY` for pairs without an edge. Duplicate lines are merged; conflicting costs for one
/// pair keep the smallest (with a note).
pub(super) fn parse_edge_list(
    path: &Path,
    text: &str,
    n: usize,
    notes: &mut Vec<String>,
) -> Result<Vec<f64>, DataError> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.replace(' ', "").eq_ignore_ascii_case("from,to,cost") => {}
        _ => {
            return Err(DataError::Csv {
                path: path.to_path_buf(),
                line: 1,
                column: 1,
                msg: "expected the header from,to,cost".into(),
            })
        }
    }
    let mut dist = vec![f64::INFINITY; n * n];
    for i in 0..n {
        dist[i * n + i] = 0.0;
    }
    let mut conflicts = 0;
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let err = |column: usize, msg: String| DataError::Csv {
            path: path.to_path_buf(),
            line: i + 1,
            column,
            msg,
        };
        if fields.len() != 3 {
            return Err(err(
                fields.len().min(3) + 1,
                format!("expected 3 fields from,to,cost, found {}", fields.len()),
            ));
        }
        let node = |c: usize| -> Result<usize, DataError> {
            match fields[c].parse::<usize>() {
                Ok(v) if v < n => Ok(v),
                _ => Err(err(
                    c + 1,
                    format!("expected a node id in 0..{n}, found {:?}", fields[c]),
                )),
            }
        };
        let (a, b) = (node(0)?, node(1)?);
        let cost = match fields[2].parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => v / 1000.0,
            _ => {
                return Err(err(
                    3,
                    format!("expected a distance >= 0, found {:?}", fields[2]),
                ))
            }
        };
        if a == b {
            continue;
        }
        let old = dist[a * n + b];
        if old.is_finite() && old != cost {
            conflicts += 1;
        }
        let v = old.min(cost);
        dist[a * n + b] = v;
        dist[b * n + a] = v;
    }
    if conflicts > 0 {
        notes.push(format!(
            "{}: {conflicts} node pairs listed with different costs; the smallest is used",
            path.display()
        ));
    }
    Ok(dist)
}

/// Read the speeds (channel 2) of ASTGCN's `PEMS08.npz`: member `data.npy`, `<f8` or `<f4`,
/// C order, shape `(T, nodes, 3)`. Returns `[T, nodes]` speeds, T and the file's SHA-256.
pub(super) fn read_pems08_npz(
    path: &Path,
    nodes: usize,
    notes: &mut Vec<String>,
) -> Result<(Vec<f32>, usize, String), DataError> {
    let bytes = read_file(path, "full PEMS08.npz (pems08_npz)")?;
    let digest = sha256_hex(&bytes);
    let fmt_err = |msg: String| DataError::Format {
        path: path.to_path_buf(),
        msg,
    };
    let mut archive = zip::ZipArchive::new(io::Cursor::new(&bytes[..]))
        .map_err(|e| fmt_err(format!("not a readable npz (zip) archive: {e}")))?;
    let members: Vec<String> = archive.file_names().map(str::to_string).collect();
    let mut member = archive.by_name("data.npy").map_err(|_| {
        fmt_err(format!(
            "no array `data` (member data.npy) in the archive; members: {members:?}"
        ))
    })?;
    let crc = member.crc32();
    if crc != PEMS08_NPY_CRC32 {
        notes.push(format!(
            "{}: data.npy has CRC-32 {crc:#010x}, not that of ASTGCN's original PEMS08.npz \
             ({PEMS08_NPY_CRC32:#010x}); a different copy",
            path.display()
        ));
    }
    let npy_err = |msg: String| fmt_err(format!("data.npy: {msg}"));
    let mut pre = [0u8; 8];
    member
        .read_exact(&mut pre)
        .map_err(|e| npy_err(format!("cannot read the header: {e}")))?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err(npy_err("not a .npy array (bad magic)".into()));
    }
    let hlen = match pre[6] {
        1 => {
            let mut b = [0u8; 2];
            member
                .read_exact(&mut b)
                .map_err(|e| npy_err(format!("cannot read the header: {e}")))?;
            u16::from_le_bytes(b) as usize
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            member
                .read_exact(&mut b)
                .map_err(|e| npy_err(format!("cannot read the header: {e}")))?;
            u32::from_le_bytes(b) as usize
        }
        v => return Err(npy_err(format!("unsupported .npy version {v}"))),
    };
    let mut hbuf = vec![0u8; hlen];
    member
        .read_exact(&mut hbuf)
        .map_err(|e| npy_err(format!("cannot read the header: {e}")))?;
    let header = String::from_utf8_lossy(&hbuf).into_owned();
    let (descr, fortran, shape) =
        parse_npy_header(&header).ok_or_else(|| npy_err(format!("bad header {header:?}")))?;
    let width = match descr.as_str() {
        "<f8" => 8,
        "<f4" => 4,
        d => {
            return Err(npy_err(format!(
                "dtype {d:?} not supported: expected '<f8' or '<f4'"
            )))
        }
    };
    if fortran {
        return Err(npy_err(
            "Fortran order not supported: expected C order".into(),
        ));
    }
    if shape.len() != 3 || shape[1] != nodes || shape[2] != 3 {
        return Err(npy_err(format!(
            "shape {shape:?}: expected (T, {nodes}, 3) = (steps, stations, flow/occupancy/speed)"
        )));
    }
    let rows = shape[0];
    let mut speeds = Vec::with_capacity(rows * nodes);
    let mut buf = vec![0u8; nodes * 3 * width];
    for t in 0..rows {
        member
            .read_exact(&mut buf)
            .map_err(|e| npy_err(format!("data end after {t} of {rows} steps: {e}")))?;
        for c in buf.chunks_exact(3 * width) {
            let s = &c[2 * width..3 * width];
            speeds.push(if width == 8 {
                f64::from_le_bytes(s.try_into().unwrap()) as f32
            } else {
                f32::from_le_bytes(s.try_into().unwrap())
            });
        }
    }
    // Read to the end so that the archive's CRC-32 is checked.
    let mut rest = Vec::new();
    member
        .read_to_end(&mut rest)
        .map_err(|e| npy_err(format!("damaged member: {e}")))?;
    if !rest.is_empty() {
        return Err(npy_err(format!(
            "{} bytes after the array data",
            rest.len()
        )));
    }
    Ok((speeds, rows, digest))
}

/// Parse `{'descr': '<f8', 'fortran_order': False, 'shape': (17856, 170, 3), }`.
pub(super) fn parse_npy_header(h: &str) -> Option<(String, bool, Vec<usize>)> {
    let after = |key: &str| -> Option<&str> {
        let k = h
            .find(&format!("'{key}'"))
            .or_else(|| h.find(&format!("\"{key}\"")))?;
        let rest = &h[k + key.len() + 2..];
        Some(rest.trim_start().strip_prefix(':')?.trim_start())
    };
    let d = after("descr")?;
    let q = d.chars().next()?;
    if q != '\'' && q != '"' {
        return None;
    }
    let descr = d[1..].split(q).next()?.to_string();
    let f = after("fortran_order")?;
    let fortran = if f.starts_with("True") {
        true
    } else if f.starts_with("False") {
        false
    } else {
        return None;
    };
    let s = after("shape")?.strip_prefix('(')?;
    let shape = s[..s.find(')')?]
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| x.parse::<usize>().ok())
        .collect::<Option<Vec<_>>>()?;
    Some((descr, fortran, shape))
}
