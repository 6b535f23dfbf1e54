//! The typed side of submitting: typed tasks ([`crate::runtime::typed::Task`]), their
//! handles, and sets of them whose results come back in completion order.

use super::error::Error;
use super::handle::TaskHandle;
use super::state::Delivery;
use super::Supervisor;
use crate::runtime::task::{Failure, Outcome, TaskId, TaskSpec};
use crate::runtime::typed::{decode, encode, Task};
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::time::Duration;

/// A typed task's result: its output, or why it has none.
pub type TaskResult<T> = Result<<T as Task>::Output, Failure>;

fn typed_result<T: Task>(o: Outcome) -> TaskResult<T> {
    match o {
        Outcome::Completed { output, .. } => {
            decode(&output).map_err(|e| Failure::BadOutput(format!("{}: {e}", T::NAME)))
        }
        Outcome::Failed(f) => Err(f),
    }
}

/// The spec of a typed task, to set a timeout on before submitting it
/// ([`Supervisor::submit_typed`]).
pub fn typed_spec<T: Task>(input: &T::Input) -> Result<TaskSpec, Error> {
    let bytes = encode(input).map_err(|e| Error::Encode(format!("{}: {e}", T::NAME)))?;
    Ok(TaskSpec::new(T::KIND, 0).with_bytes(bytes))
}

/// A typed task's output is decoded for the caller: it cannot also be held.
fn check_typed<T: Task>(spec: &TaskSpec) -> Result<(), Error> {
    if spec.kind != T::KIND {
        return Err(Error::InvalidTask(
            "the spec is of another kind than the typed task's",
        ));
    }
    if spec.output.is_held() {
        return Err(Error::InvalidTask(
            "a typed task's output is returned, not held",
        ));
    }
    Ok(())
}

/// A submitted typed task.
pub struct TypedHandle<T: Task> {
    inner: TaskHandle,
    _task: PhantomData<fn() -> T>,
}

impl<T: Task> std::fmt::Debug for TypedHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedHandle")
            .field("task", &T::NAME)
            .field("id", &self.inner.id())
            .finish()
    }
}

impl<T: Task> TypedHandle<T> {
    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.inner.id()
    }

    /// Waits for the result; `None` only when `timeout` passes first. A task always ends
    /// with a result, even when the supervisor stops (then as
    /// [`Failure::Cancelled`]).
    pub fn wait(&self, timeout: Option<Duration>) -> Option<TaskResult<T>> {
        self.inner.wait(timeout).map(typed_result::<T>)
    }

    /// The result, if the task has ended.
    pub fn try_result(&self) -> Option<TaskResult<T>> {
        self.inner.try_result().map(typed_result::<T>)
    }
}

/// Typed tasks whose results come back in the order they finish, like a join set.
pub struct TaskSet<'s, T: Task> {
    sup: &'s Supervisor,
    set: u64,
    /// Tasks submitted and not yet joined.
    open: std::collections::HashSet<u64>,
    _task: PhantomData<fn() -> T>,
}

impl<T: Task> std::fmt::Debug for TaskSet<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskSet")
            .field("task", &T::NAME)
            .field("open", &self.open.len())
            .finish()
    }
}

/// What [`TaskSet::join_next_timeout`] found.
pub enum Joined<T: Task> {
    /// A task ended.
    Done(TaskId, TaskResult<T>),
    /// Every task of the set has been joined.
    Empty,
    /// None ended in time.
    TimedOut,
}

impl<T: Task> std::fmt::Debug for Joined<T>
where
    T::Output: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Joined::Done(id, r) => f.debug_tuple("Done").field(id).field(r).finish(),
            Joined::Empty => f.write_str("Empty"),
            Joined::TimedOut => f.write_str("TimedOut"),
        }
    }
}

impl<T: Task> TaskSet<'_, T> {
    /// Submits one more task to the set.
    pub fn spawn(&mut self, input: &T::Input) -> Result<TaskId, Error> {
        self.spawn_spec(typed_spec::<T>(input)?)
    }

    /// Submits one more task to the set from its spec (made by [`typed_spec`], with a
    /// timeout, say).
    pub fn spawn_spec(&mut self, spec: TaskSpec) -> Result<TaskId, Error> {
        check_typed::<T>(&spec)?;
        let id = self.sup.shared.submit(spec, Delivery::Set(self.set))?;
        self.open.insert(id);
        Ok(TaskId(id))
    }

    /// Tasks submitted and not yet joined.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether every task has been joined.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// The next task to end, waiting as long as it takes; `None` once every task has been
    /// joined.
    pub fn join_next(&mut self) -> Option<(TaskId, TaskResult<T>)> {
        match self.join_next_timeout(None) {
            Joined::Done(id, r) => Some((id, r)),
            Joined::Empty | Joined::TimedOut => None,
        }
    }

    /// The next task to end, waiting at most `timeout`.
    pub fn join_next_timeout(&mut self, timeout: Option<Duration>) -> Joined<T> {
        if self.open.is_empty() {
            return Joined::Empty;
        }
        let set = self.set;
        let got = self.sup.shared.wait_for(timeout, |st| {
            st.sets.get_mut(&set).and_then(VecDeque::pop_front)
        });
        match got {
            Some((id, o, _)) => {
                self.open.remove(&id);
                Joined::Done(TaskId(id), typed_result::<T>(o))
            }
            None => Joined::TimedOut,
        }
    }
}

impl<T: Task> Drop for TaskSet<'_, T> {
    /// Cancels the tasks not yet joined, as a join set aborts its tasks when dropped.
    fn drop(&mut self) {
        self.sup.drop_set(self.set, self.open.iter().copied());
    }
}

impl Supervisor {
    /// Submits a typed task.
    pub fn submit_task<T: Task>(&self, input: &T::Input) -> Result<TypedHandle<T>, Error> {
        self.submit_typed(typed_spec::<T>(input)?)
    }

    /// Submits a typed task from its spec (made by [`typed_spec`], with a timeout, say).
    pub fn submit_typed<T: Task>(&self, spec: TaskSpec) -> Result<TypedHandle<T>, Error> {
        check_typed::<T>(&spec)?;
        Ok(TypedHandle {
            inner: self.submit(spec)?,
            _task: PhantomData,
        })
    }

    /// An empty set of typed tasks.
    pub fn task_set<T: Task>(&self) -> TaskSet<'_, T> {
        let mut st = self.shared.state.lock();
        let set = st.next_set;
        st.next_set += 1;
        st.sets.insert(set, VecDeque::new());
        TaskSet {
            sup: self,
            set,
            open: Default::default(),
            _task: PhantomData,
        }
    }
}
