//! The image models behind [`ImageModel`]: one adapter per provider, and [`Models`], which runs
//! each request on the provider the catalogue names for its model (docs/design.md, "Image
//! models"). Adding a provider is its adapter file; here, its settings in [`ProviderSettings`],
//! its start and its arm in [`Models`]; its name in domain/catalogue.rs; and its models in
//! models.toml (docs/models.md, "Adding a provider").

#[cfg(feature = "bedrock")]
pub mod bedrock;
pub mod inspect;
pub mod local;
pub mod openai;
pub mod replicate;

use aws_config::SdkConfig;
use url::Url;

use crate::adapters::settings::{ConfigError, parse_or, stored_secret};
use crate::domain::catalogue::{Catalogue, ModelEntry, Provider};
use crate::domain::generation::GenerateRequest;
use crate::domain::retry::Budget;
use crate::domain::secret::Secret;
use crate::ports::{GeneratedImage, ImageModel, ModelError, RunLog};

/// The providers' settings, read with the function's own at cold start (runtime/config.rs).
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// Whether a provider may be reached on a local or private address (`ALLOW_LOCAL_URLS`).
    pub allow_local_urls: bool,
    /// The largest image a provider's output URL may answer (`MAX_OUTPUT_BYTES`).
    pub max_output_bytes: u64,
    pub replicate: ProviderAccess,
    pub openai: ProviderAccess,
}

impl ProviderSettings {
    pub fn parse(get: &impl Fn(&'static str) -> Option<String>, allow_local_urls: bool) -> Result<Self, ConfigError> {
        let max_output_bytes = parse_or(get, "MAX_OUTPUT_BYTES", 50 * 1024 * 1024)?;
        Ok(Self {
            allow_local_urls,
            max_output_bytes,
            replicate: ProviderAccess::parse(
                get,
                ("REPLICATE_API_BASE_URL", replicate::DEFAULT_API_BASE_URL),
                "REPLICATE_API_TOKEN",
                "REPLICATE_API_TOKEN_PARAMETER",
            )?,
            openai: ProviderAccess::parse(
                get,
                ("OPENAI_API_BASE_URL", openai::DEFAULT_API_BASE_URL),
                "OPENAI_API_KEY",
                "OPENAI_API_KEY_PARAMETER",
            )?,
        })
    }
}

/// Where a provider's API is, and its token: in a variable (a local run), or in the SSM
/// parameter another variable names (a deployed stack); the variable wins.
#[derive(Debug, Clone)]
pub struct ProviderAccess {
    /// The API's address; tests point it at a local mock.
    pub api_base_url: Url,
    token_variable: &'static str,
    token: Option<Secret>,
    parameter_variable: &'static str,
    parameter: Option<String>,
}

impl ProviderAccess {
    fn parse(
        get: &impl Fn(&'static str) -> Option<String>,
        (base_variable, default_base): (&'static str, &str),
        token_variable: &'static str,
        parameter_variable: &'static str,
    ) -> Result<Self, ConfigError> {
        let raw = get(base_variable).unwrap_or_else(|| default_base.to_owned());
        Ok(Self {
            api_base_url: Url::parse(&raw).map_err(|e| ConfigError::invalid(base_variable, &raw, &e.to_string()))?,
            token_variable,
            token: get(token_variable).map(Secret::new),
            parameter_variable,
            parameter: get(parameter_variable),
        })
    }

    /// The token, read once at cold start.
    pub async fn token(&self, sdk: &SdkConfig) -> Result<Secret, ConfigError> {
        match (&self.token, &self.parameter) {
            (Some(token), _) => Ok(token.clone()),
            (None, Some(parameter)) => stored_secret(sdk, self.parameter_variable, parameter).await,
            (None, None) => Err(ConfigError::Missing(self.token_variable)),
        }
    }
}

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
    /// Every provider the catalogue's models use, each built once at cold start.
    pub async fn start(
        catalogue: &Catalogue,
        settings: &ProviderSettings,
        sdk: &SdkConfig,
    ) -> Result<Self, ConfigError> {
        Ok(Models {
            catalogue: catalogue.clone(),
            local: local::LocalModel,
            replicate: match catalogue.uses(Provider::Replicate) {
                true => Some(replicate::ReplicateModel::start(settings, sdk).await?),
                false => None,
            },
            openai: match catalogue.uses(Provider::OpenAi) {
                true => Some(openai::OpenAiModel::start(settings, sdk).await?),
                false => None,
            },
            // Bedrock is called with the function's own role: no token to read.
            #[cfg(feature = "bedrock")]
            bedrock: catalogue
                .uses(Provider::Bedrock)
                .then(|| bedrock::BedrockModel::new(sdk)),
        })
    }

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
