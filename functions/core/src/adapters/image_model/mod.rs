//! The image models behind [`ImageModel`], chosen by `MODEL_PROVIDER` when the runtime wires
//! the function.

#[cfg(feature = "bedrock")]
pub mod bedrock;
pub mod inspect;
pub mod local;
pub mod replicate;

use url::Url;

use crate::domain::generation::GenerateRequest;
use crate::domain::retry::Budget;
use crate::ports::{GeneratedImage, ImageModel, ModelError, RunLog};

/// The model a deployment is configured with.
#[derive(Debug, Clone)]
pub enum Model {
    Local(local::LocalModel),
    Replicate(replicate::ReplicateModel),
}

/// An output of whichever model ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Local(u32),
    Replicate(Url),
}

impl ImageModel for Model {
    type Output = Output;

    fn min_budget(&self) -> std::time::Duration {
        match self {
            Model::Local(model) => model.min_budget(),
            Model::Replicate(model) => model.min_budget(),
        }
    }

    async fn generate<L: RunLog>(
        &self,
        request: &GenerateRequest,
        budget: &Budget,
        log: &L,
    ) -> Result<Vec<Output>, ModelError> {
        Ok(match self {
            Model::Local(model) => model
                .generate(request, budget, log)
                .await?
                .into_iter()
                .map(Output::Local)
                .collect(),
            Model::Replicate(model) => model
                .generate(request, budget, log)
                .await?
                .into_iter()
                .map(Output::Replicate)
                .collect(),
        })
    }

    async fn fetch(
        &self,
        request: &GenerateRequest,
        output: &Output,
        budget: &Budget,
    ) -> Result<GeneratedImage, ModelError> {
        match (self, output) {
            (Model::Local(model), Output::Local(index)) => model.fetch(request, index, budget).await,
            (Model::Replicate(model), Output::Replicate(url)) => model.fetch(request, url, budget).await,
            _ => Err(ModelError::Permanent {
                code: "internal".into(),
                message: "an output reached a model that did not make it".into(),
            }),
        }
    }
    async fn cancel_run(&self, id: &str) -> Result<(), ModelError> {
        match self {
            Model::Local(model) => model.cancel_run(id).await,
            Model::Replicate(model) => model.cancel_run(id).await,
        }
    }
}
