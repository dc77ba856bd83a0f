//! The image models behind [`ImageModel`](crate::ports::ImageModel), chosen by `MODEL_PROVIDER`.

pub mod local;
pub mod replicate;

use url::Url;

use crate::config::{Config, ConfigError, ModelProvider};
use crate::ports::{GeneratedImage, ImageModel, ModelError};
use crate::request::GenerateRequest;
use crate::retry::Budget;

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

impl Model {
    /// Builds the configured model; the Replicate model needs its token.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        Ok(match config.model_provider {
            ModelProvider::Local => Model::Local(local::LocalModel),
            ModelProvider::Replicate => {
                let token = config
                    .replicate_api_token
                    .clone()
                    .ok_or(ConfigError::Missing("REPLICATE_API_TOKEN"))?;
                let settings = replicate::ReplicateSettings {
                    api_base_url: config.replicate_api_base_url.clone(),
                    token,
                    allow_local_urls: config.allow_local_urls,
                    max_output_bytes: config.max_output_bytes,
                };
                Model::Replicate(replicate::ReplicateModel::new(settings).map_err(ConfigError::Startup)?)
            }
        })
    }
}

impl ImageModel for Model {
    type Output = Output;

    async fn generate(&self, request: &GenerateRequest, budget: &Budget) -> Result<Vec<Output>, ModelError> {
        Ok(match self {
            Model::Local(model) => model
                .generate(request, budget)
                .await?
                .into_iter()
                .map(Output::Local)
                .collect(),
            Model::Replicate(model) => model
                .generate(request, budget)
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
}
