//! When a run that still computes finite numbers has in fact diverged.
//!
//! A non-finite loss stops a run at once (in the training loop). A learning rate far too large
//! can instead leave every number finite but meaningless: the paper's student at lr 1e6 ends
//! with a validation MAE of millions of mph. [`check_epoch`] runs after each epoch's validation
//! and calls a run diverged when
//!
//! - its validation MAE (mph, mean over the predicted steps) is not finite or above
//!   [`MAX_VAL_MAE_MPH`] = 200 mph: the speeds of PeMSD7 and PeMSD8 lie between 0 and about
//!   90 mph, so predictions that far off on average are outside any physical range (an
//!   untrained network, whose outputs pass a sigmoid and one linear layer, is off by tens of
//!   mph at most); or
//! - its mean training loss exceeds [`MAX_LOSS_GROWTH`] = 10⁴ times the first epoch's: the
//!   losses here are z-scored squared errors and distillation terms, about 0.02–1 for a
//!   healthy run and falling, so four orders of magnitude up is an explosion, not noise.
//!
//! Neither rule can fire on a run that trains normally; a diverged run is recorded as failed
//! with the rule's message, and its dependants are skipped.

/// Validation MAE (mph) above which a run has diverged.
pub const MAX_VAL_MAE_MPH: f64 = 200.0;

/// Growth of the mean training loss over the first epoch's beyond which a run has diverged.
pub const MAX_LOSS_GROWTH: f64 = 1e4;

/// Why a run counts as diverged (the message starts with "training diverged").
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Divergence {
    #[error(
        "training diverged at epoch {epoch}: validation MAE is {val_mae} (predictions are not \
         finite numbers)"
    )]
    NonFiniteMae { epoch: usize, val_mae: f64 },
    #[error(
        "training diverged at epoch {epoch}: validation MAE {val_mae:.0} mph is above \
         {MAX_VAL_MAE_MPH} mph, outside any physical range of speeds (a learning rate too \
         large?)"
    )]
    MaeOutOfRange { epoch: usize, val_mae: f64 },
    #[error(
        "training diverged at epoch {epoch}: mean training loss {loss:.4e} is over {MAX_LOSS_GROWTH:e} \
         times the first epoch's {first:.4e} (a learning rate too large?)"
    )]
    LossExploded { epoch: usize, loss: f64, first: f64 },
}

/// Checks one finished epoch (1-based `epoch`): `first_epoch_loss` is the mean training loss of
/// the run's first epoch (equal to `epoch_loss` at epoch 1), `epoch_loss` this epoch's mean
/// training loss, `val_mae_mph` this epoch's validation MAE in mph (mean over the predicted
/// steps). `Err` when the run has diverged (see the module's rules).
pub fn check_epoch(
    epoch: usize,
    first_epoch_loss: f64,
    epoch_loss: f64,
    val_mae_mph: f64,
) -> Result<(), Divergence> {
    if !val_mae_mph.is_finite() {
        return Err(Divergence::NonFiniteMae {
            epoch,
            val_mae: val_mae_mph,
        });
    }
    if val_mae_mph > MAX_VAL_MAE_MPH {
        return Err(Divergence::MaeOutOfRange {
            epoch,
            val_mae: val_mae_mph,
        });
    }
    let comparable = first_epoch_loss.is_finite() && first_epoch_loss > 0.0;
    if comparable && epoch_loss > MAX_LOSS_GROWTH * first_epoch_loss {
        return Err(Divergence::LossExploded {
            epoch,
            loss: epoch_loss,
            first: first_epoch_loss,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_epochs_pass() {
        // An untrained network, a short run and a converged one, on both datasets' scales.
        for (first, loss, mae) in [
            (1.31, 1.31, 4.77),
            (1.2, 0.87, 2.87),
            (0.9, 0.03, 2.3),
            (0.02, 0.05, 60.0),
            (0.5, 4000.0, 199.9),
        ] {
            assert_eq!(
                check_epoch(3, first, loss, mae),
                Ok(()),
                "{first} {loss} {mae}"
            );
        }
        // A first loss of zero or NaN is no scale to compare with; the MAE rule still applies.
        assert_eq!(check_epoch(2, 0.0, 5.0, 3.0), Ok(()));
        assert_eq!(check_epoch(2, f64::NAN, 5.0, 3.0), Ok(()));
    }

    #[test]
    fn predictions_outside_physical_speeds_diverge() {
        // The student at lr 1e6 (measured): finite, absurd.
        let err = check_epoch(1, 1.2e13, 1.2e13, 7_722_835.7).unwrap_err();
        assert_eq!(
            err,
            Divergence::MaeOutOfRange {
                epoch: 1,
                val_mae: 7_722_835.7
            }
        );
        let msg = err.to_string();
        assert!(msg.starts_with("training diverged at epoch 1"), "{msg}");
        assert!(
            msg.contains("7722836 mph") && msg.contains("200 mph"),
            "{msg}"
        );
        assert!(check_epoch(4, 1.0, 1.0, 200.5).is_err());
        for bad in [f64::NAN, f64::INFINITY] {
            let err = check_epoch(2, 1.0, 1.0, bad).unwrap_err();
            assert!(
                matches!(err, Divergence::NonFiniteMae { epoch: 2, .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn a_loss_exploding_over_its_first_value_diverges() {
        let err = check_epoch(5, 0.8, 0.8e4 * 1.01, 35.0).unwrap_err();
        assert!(
            matches!(err, Divergence::LossExploded { epoch: 5, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("first epoch's 8.0000e-1"), "{err}");
        assert_eq!(check_epoch(5, 0.8, 0.8e4 * 0.99, 35.0), Ok(()));
    }
}
