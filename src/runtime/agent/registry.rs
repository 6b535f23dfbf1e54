//! The task kinds an agent serves: a handler per kind.

use super::TaskContext;
use crate::runtime::task::{TaskError, TaskKind};
use std::collections::BTreeMap;

/// A task handler: input in, output bytes or a [`TaskError`] out.
pub type Handler = Box<dyn Fn(&TaskContext<'_>) -> Result<Vec<u8>, TaskError> + Send + Sync>;

/// Why a kind could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The kind already has a handler.
    #[error("task kind {kind} is already registered (as {existing:?}); {name:?} cannot take it")]
    Duplicate {
        /// The kind.
        kind: TaskKind,
        /// The name it was registered under.
        existing: &'static str,
        /// The name that asked for it again.
        name: &'static str,
    },
    /// The kind is not a task kind (the stop descriptor's value).
    #[error("task kind {0} is reserved")]
    Reserved(TaskKind),
}

/// The task kinds an agent can run.
#[derive(Default)]
pub struct Registry {
    handlers: BTreeMap<u32, (&'static str, Handler)>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.kinds().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the handler of `kind`; refuses a kind that already has one. The handler's
    /// error is anything that converts into a [`TaskError`] (a `String` becomes kind
    /// `error`).
    pub fn register<E: Into<TaskError>>(
        &mut self,
        kind: TaskKind,
        name: &'static str,
        handler: impl Fn(&TaskContext<'_>) -> Result<Vec<u8>, E> + Send + Sync + 'static,
    ) -> Result<(), RegistryError> {
        self.insert(
            kind,
            name,
            Box::new(move |ctx| handler(ctx).map_err(Into::into)),
        )
    }

    /// Adds a handler already boxed as the registry keeps it (no second box around it).
    pub(super) fn insert(
        &mut self,
        kind: TaskKind,
        name: &'static str,
        handler: Handler,
    ) -> Result<(), RegistryError> {
        if kind == crate::runtime::task::kinds::STOP {
            return Err(RegistryError::Reserved(kind));
        }
        if let Some((existing, _)) = self.handlers.get(&kind.get()) {
            return Err(RegistryError::Duplicate {
                kind,
                existing,
                name,
            });
        }
        self.handlers.insert(kind.get(), (name, handler));
        Ok(())
    }

    /// Adds a typed task ([`crate::runtime::typed::Task`]) under its kind. An input that
    /// does not decode fails the task with kind `bad_input`; an output that does not
    /// encode, with kind `bad_output`.
    pub fn add<T: crate::runtime::typed::Task>(&mut self, task: T) -> Result<(), RegistryError> {
        use crate::runtime::typed::{decode, encode};
        self.register(T::KIND, T::NAME, move |ctx| {
            let input: T::Input = decode(ctx.input())
                .map_err(|e| TaskError::new("bad_input", format!("{}: {e}", T::NAME)))?;
            let output = task.run(ctx, input)?;
            encode(&output).map_err(|e| TaskError::new("bad_output", format!("{}: {e}", T::NAME)))
        })
    }

    /// The handler of `kind` (as a descriptor carries it).
    pub fn get(&self, kind: u32) -> Option<&Handler> {
        self.handlers.get(&kind).map(|(_, h)| h)
    }

    /// The kinds served, with their names, in kind order.
    pub fn kinds(&self) -> impl Iterator<Item = (TaskKind, &'static str)> + '_ {
        self.handlers.iter().map(|(k, (n, _))| (TaskKind(*k), *n))
    }
}
