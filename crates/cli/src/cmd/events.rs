//! stub
use super::Ctx;
use crate::fail::Outcome;
pub(crate) async fn run(_ctx: &Ctx, _command: &crate::app::EventsCommand) -> Outcome {
    Ok(())
}
