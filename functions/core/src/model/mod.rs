//! The image models behind [`ImageModel`](crate::ports::ImageModel), chosen by `MODEL_PROVIDER`.

pub mod local;

use crate::config::{Config, ModelProvider};
use crate::ports::{GeneratedImage, ImageModel, ModelError};
use crate::request::GenerateRequest;
use crate::retry::Budget;

/// The model a deployment is configured with.
#[derive(Debug, Clone)]
pub enum Model {
    Local(local::LocalModel),
}

impl Model {
    pub fn from_config(config: &Config) -> Self {
        match config.model_provider {
            ModelProvider::Local => Model::Local(local::LocalModel),
        }
    }
}

impl ImageModel for Model {
    async fn generate(&self, request: &GenerateRequest, budget: &Budget) -> Result<Vec<GeneratedImage>, ModelError> {
        match self {
            Model::Local(model) => model.generate(request, budget).await,
        }
    }
}
