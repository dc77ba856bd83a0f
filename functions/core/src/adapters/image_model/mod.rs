//! The image models behind [`ImageModel`]: one adapter per provider, and [`Models`], which runs
//! each request on the provider the catalogue names for its model (docs/design.md, "Image
//! models"). Adding a provider is its adapter file, its arm in [`Models`], its wiring at cold
//! start (runtime/bootstrap.rs), its name and settings (domain/catalogue.rs, runtime/config.rs)
//! and its catalogue entries (docs/models.md, "Adding a model").

#[cfg(feature = "bedrock")]
pub mod bedrock;
pub mod inspect;
pub mod local;
pub mod openai;
pub mod replicate;

use url::Url;

use crate::domain::catalogue::{Catalogue, ModelEntry, Provider};
use crate::domain::generation::GenerateRequest;
use crate::domain::retry::Budget;
use crate::ports::{GeneratedImage, ImageModel, ModelError, RunLog};

/// Every provider a deployment runs, each built once at cold start; `None` for a provider no
/// offered model uses.
#[derive(Debug, Clone, Default)]
pub struct Models {
    pub catalogue: Catalogue,
    pub local: local::LocalModel,
    pub replicate: Option<replicate::ReplicateModel>,
    pub openai: Option<openai::OpenAiModel>,
    /// Linked into `generate` alone, the one function that runs models (the `bedrock` feature).
    #[cfg(feature = "bedrock")]
    pub bedrock: Option<bedrock::BedrockModel>,
}

/// An output of whichever model ran: an image still to render or download, or one made already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Local(u32),
    Replicate(Url),
    Image(Box<GeneratedImage>),
}

impl Models {
    fn entry(&self, model: &str) -> Result<&ModelEntry, ModelError> {
        self.catalogue.entry(model).ok_or_else(|| ModelError::Permanent {
            code: "unknown_model".into(),
            message: format!("the model {model} is no longer offered"),
        })
    }

    /// The request as its provider knows the model.
    fn at_provider(entry: &ModelEntry, request: &GenerateRequest) -> GenerateRequest {
        GenerateRequest {
            model: entry.provider_model.clone(),
            ..request.clone()
        }
    }
}

fn not_configured(provider: Provider) -> ModelError {
    ModelError::Configuration {
        message: format!("the {} provider is not configured in this function", provider.name()),
    }
}

impl ImageModel for Models {
    type Output = Output;

    /// The most any configured provider needs: a job is not claimed without time for its model.
    fn min_budget(&self) -> std::time::Duration {
        [
            Some(self.local.min_budget()),
            self.replicate.as_ref().map(ImageModel::min_budget),
            self.openai.as_ref().map(openai::OpenAiModel::min_budget),
            #[cfg(feature = "bedrock")]
            self.bedrock.as_ref().map(bedrock::BedrockModel::min_budget),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or_default()
    }

    async fn generate<L: RunLog>(
        &self,
        request: &GenerateRequest,
        budget: &Budget,
        log: &L,
    ) -> Result<Vec<Output>, ModelError> {
        let entry = self.entry(&request.model)?;
        let made = |images: Vec<GeneratedImage>| images.into_iter().map(|i| Output::Image(Box::new(i))).collect();
        if entry.provider == Provider::OpenAi {
            let openai = self.openai.as_ref().ok_or(not_configured(Provider::OpenAi))?;
            return Ok(made(openai.generate(entry, request, budget).await?));
        }
        #[cfg(feature = "bedrock")]
        if entry.provider == Provider::Bedrock {
            let bedrock = self.bedrock.as_ref().ok_or(not_configured(Provider::Bedrock))?;
            return Ok(made(bedrock.generate(entry, request, budget).await?));
        }
        let request = &Self::at_provider(entry, request);
        Ok(match entry.provider {
            Provider::Local => self
                .local
                .generate(request, budget, log)
                .await?
                .into_iter()
                .map(Output::Local)
                .collect(),
            Provider::Replicate => self
                .replicate
                .as_ref()
                .ok_or(not_configured(Provider::Replicate))?
                .generate(request, budget, log)
                .await?
                .into_iter()
                .map(Output::Replicate)
                .collect(),
            provider => return Err(not_configured(provider)),
        })
    }

    async fn fetch(
        &self,
        request: &GenerateRequest,
        output: &Output,
        budget: &Budget,
    ) -> Result<GeneratedImage, ModelError> {
        let entry = self.entry(&request.model)?;
        let request = &Self::at_provider(entry, request);
        match (output, &self.replicate) {
            (Output::Local(index), _) => self.local.fetch(request, index, budget).await,
            (Output::Replicate(url), Some(replicate)) => replicate.fetch(request, url, budget).await,
            (Output::Replicate(_), None) => Err(not_configured(Provider::Replicate)),
            (Output::Image(image), _) => Ok((**image).clone()),
        }
    }

    /// Only Replicate's runs are paid while they run on: the other providers answer in the call.
    async fn cancel_run(&self, id: &str) -> Result<(), ModelError> {
        match &self.replicate {
            Some(replicate) => replicate.cancel_run(id).await,
            None => Ok(()),
        }
    }
}
