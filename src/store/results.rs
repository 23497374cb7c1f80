//! A finished run's result rows: epochs, metrics, profile, attention, pruning, artefacts.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::types::{Attention, EpochRow, MetricRow, Profile, Pruning, RunResult, RunStatus};
use super::{real, sql};

pub(super) fn insert_epoch(conn: &Connection, hash: &str, e: &EpochRow) -> rusqlite::Result<()> {
    conn.prepare_cached(sql::INSERT_EPOCH)?.execute(params![
        hash,
        e.epoch,
        e.lr,
        e.train_loss,
        e.val_mae,
        e.seconds
    ])?;
    Ok(())
}

pub(super) fn write_result(
    tx: &Transaction<'_>,
    hash: &str,
    r: &RunResult,
) -> rusqlite::Result<()> {
    for clear in sql::CLEAR_RESULT {
        tx.execute(clear, [hash])?;
    }
    for e in &r.epochs {
        insert_epoch(tx, hash, e)?;
    }
    for m in &r.metrics {
        tx.prepare_cached(sql::INSERT_METRIC)?
            .execute(params![hash, m.split, m.step, m.mape, m.mae, m.rmse])?;
    }
    if let Some(pr) = &r.profile {
        tx.execute(
            sql::INSERT_PROFILE,
            params![
                hash,
                pr.parameters,
                pr.flops,
                pr.test_time_s,
                pr.test_time_runs,
                pr.test_time_batch,
                pr.device
            ],
        )?;
    }
    if let Some(a) = &r.attention {
        tx.execute(sql::INSERT_ATTENTION, params![hash, a.picks, a.elements])?;
    }
    if let Some(pr) = &r.pruning {
        tx.execute(
            sql::INSERT_PRUNING,
            params![
                hash,
                pr.target_pct,
                pr.masked_share,
                pr.compact_parameters,
                pr.original_parameters,
                pr.speedup
            ],
        )?;
    }
    for (position, (kind, path)) in r.artefacts.iter().enumerate() {
        tx.prepare_cached(sql::INSERT_ARTEFACT)?.execute(params![
            hash,
            position as i64,
            kind,
            path
        ])?;
    }
    Ok(())
}

pub(super) fn read_result(conn: &Connection, hash: &str) -> rusqlite::Result<Option<RunResult>> {
    let head: Option<(RunStatus, Option<u32>, Option<f64>)> = conn
        .query_row(sql::RESULT_HEAD, [hash], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((RunStatus::Done, best_epoch, train_seconds)) = head else {
        return Ok(None);
    };
    let epochs = read_epochs(conn, hash)?;
    let metrics = conn
        .prepare_cached(sql::SELECT_METRICS)?
        .query_map([hash], |r| {
            Ok(MetricRow {
                split: r.get(0)?,
                step: r.get(1)?,
                mape: real(r, 2)?,
                mae: real(r, 3)?,
                rmse: real(r, 4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let profile = conn
        .query_row(sql::SELECT_PROFILE, [hash], |r| {
            Ok(Profile {
                parameters: r.get(0)?,
                flops: r.get(1)?,
                test_time_s: r.get(2)?,
                test_time_runs: r.get(3)?,
                test_time_batch: r.get(4)?,
                device: r.get(5)?,
            })
        })
        .optional()?;
    let attention = conn
        .query_row(sql::SELECT_ATTENTION, [hash], |r| {
            Ok(Attention {
                picks: r.get(0)?,
                elements: r.get(1)?,
            })
        })
        .optional()?;
    let pruning = conn
        .query_row(sql::SELECT_PRUNING, [hash], |r| {
            Ok(Pruning {
                target_pct: real(r, 0)?,
                masked_share: real(r, 1)?,
                compact_parameters: r.get(2)?,
                original_parameters: r.get(3)?,
                speedup: r.get(4)?,
            })
        })
        .optional()?;
    let artefacts = conn
        .prepare_cached(sql::SELECT_ARTEFACTS)?
        .query_map([hash], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(RunResult {
        epochs,
        metrics,
        profile,
        attention,
        pruning,
        artefacts,
        best_epoch,
        train_seconds: train_seconds.unwrap_or(f64::NAN),
    }))
}

/// The epochs recorded for `hash`, in order.
pub(super) fn read_epochs(conn: &Connection, hash: &str) -> rusqlite::Result<Vec<EpochRow>> {
    conn.prepare_cached(sql::SELECT_EPOCHS)?
        .query_map([hash], |r| {
            Ok(EpochRow {
                epoch: r.get(0)?,
                lr: real(r, 1)?,
                train_loss: real(r, 2)?,
                val_mae: real(r, 3)?,
                seconds: real(r, 4)?,
            })
        })?
        .collect()
}
