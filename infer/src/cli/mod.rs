//! The subcommands of `infer`, one module each: arguments and the steps of the command.

pub mod cells;
pub mod genes;
pub mod inspect;
pub mod mol;
pub mod nodes;
pub mod predict;
pub mod slide;

/// Print the accuracy of the predictions against labels read with the input, if any.
pub fn report_accuracy(c: &infer::classify::Classification, labels: Option<&[String]>) {
    if let Some(labels) = labels {
        let (correct, total) = c.correct(labels);
        eprintln!("accuracy against the input's labels: {:.3} ({correct}/{total})", correct as f64 / total as f64);
    }
}
