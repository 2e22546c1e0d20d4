"""Where the training rows are: all here, or split over a torch.distributed group.

When ``fit`` runs inside an initialized process group of more than one rank
(``torchrun --nproc_per_node=K script.py``: gloo on CPUs, nccl on GPUs), each
rank passes its own shard of rows and the ranks train one model together. The
parameters, the head, the optimizer and the trust region are replicated; every
quantity that is a sum over training rows is summed locally and all-reduced:

- slimTrain: each mini-batch's Gram ``Z^T Z``, cross term ``Z^T R0``, residual
  norm and sample count (all that slimTik and its sampled GCV need), and the
  gradient of theta;
- GNvpro: the reduced objective, its gradient, each Gauss-Newton product (and
  the two row sums inside it), Kaufman's preconditioner;
- the full-data head solve: a tall-skinny QR (each rank's ``R`` factor and
  projected targets gathered, one SVD of the stack), so the SVD route's
  accuracy at tiny ridge weights is kept;
- the estimator's target scaling, sample-weight normalization, validation
  score and the seed (rank 0's).

Every rank then runs the same arithmetic on the same reduced values, so the
ranks' models stay identical. A :class:`RowGroup` is what the training code
sees; :data:`LOCAL_ROWS` (all rows in this process) makes every collective the
identity.
"""

import threading
from contextlib import contextmanager

import torch

__all__ = ["LOCAL_ROWS", "DistributedRows", "RowGroup", "local_fits", "row_group"]

# local_fits() depth: while above 0, fits see all their rows here even inside a
# process group. Process-wide, not a context variable, so that the threads of a
# threading joblib backend started inside the context see it too.
_local_fits = {"depth": 0, "lock": threading.Lock()}


class RowGroup:
    """All the training rows are in this process: every collective is the identity.

    Attributes
    ----------
    distributed : bool
        Whether the rows are split over several processes.
    rank, world_size : int
        This process's rank and the number of processes.
    """

    distributed = False
    rank = 0
    world_size = 1

    def sum(self, *tensors):
        """Sum tensors over the ranks (one all-reduce for all of them).

        Parameters
        ----------
        *tensors : Tensor
            Row sums of this rank, any shapes.

        Returns
        -------
        Tensor or tuple of Tensor
            The sums over all ranks, in the same shapes and dtypes (the tensors
            themselves here); one tensor for one argument.
        """
        return tensors[0] if len(tensors) == 1 else tensors

    def sum_floats(self, *values):
        """Sum Python numbers over the ranks.

        Parameters
        ----------
        *values : float
            This rank's values.

        Returns
        -------
        float or tuple of float
            The sums (float64); one number for one argument.
        """
        values = tuple(float(v) for v in values)
        return values[0] if len(values) == 1 else values

    def max_int(self, value):
        """The largest of the ranks' integers.

        Parameters
        ----------
        value : int
            This rank's value.

        Returns
        -------
        int
        """
        return int(value)

    def all(self, flag):
        """Whether ``flag`` holds on every rank.

        Parameters
        ----------
        flag : bool
            This rank's truth value.

        Returns
        -------
        bool
        """
        return bool(flag)

    def gather(self, tensor):
        """Every rank's tensor (all of the same shape), in rank order.

        Parameters
        ----------
        tensor : Tensor
            This rank's tensor.

        Returns
        -------
        list of Tensor
        """
        return [tensor]

    def gather_objects(self, obj):
        """Every rank's picklable object, in rank order.

        Parameters
        ----------
        obj : object
            This rank's object.

        Returns
        -------
        list
        """
        return [obj]

    def broadcast_object(self, obj):
        """Rank 0's picklable object, on every rank.

        Parameters
        ----------
        obj : object
            This rank's object (only rank 0's is kept).

        Returns
        -------
        object
        """
        return obj

    def broadcast_module_(self, module):
        """Overwrite a module's parameters and buffers with rank 0's, in place.

        Parameters
        ----------
        module : torch.nn.Module
            This rank's module, of the same structure on every rank.
        """

    def agreed(self, function, *args, **kwargs):
        """Run a step that may fail on some ranks only (input validation); if
        it fails on any, raise on every rank.

        Parameters
        ----------
        function : callable
            The step; it must not call collectives.
        *args, **kwargs
            Its arguments.

        Returns
        -------
        object
            What ``function`` returns.
        """
        try:
            result = function(*args, **kwargs)
        except Exception as error:
            self.agree(error)
            raise
        self.agree(None)
        return result

    def agree(self, error):
        """Raise on every rank when any rank failed, so that none waits forever
        in a collective the failed one never reaches.

        Parameters
        ----------
        error : BaseException or None
            This rank's exception, or None.

        Raises
        ------
        BaseException
            ``error`` on the rank that raised it; on the others a
            ``RuntimeError`` naming the rank and its message.
        """
        if error is not None:
            raise error


class DistributedRows(RowGroup):
    """The training rows are split over the ranks of the default process group.

    Collectives run on the group's backend: CPU tensors on gloo, CUDA tensors
    on nccl. When one fails (a peer died, or raised mid-fit and left the others
    waiting until the group's timeout), it raises a ``RuntimeError`` saying so.
    """

    distributed = True

    def __init__(self):
        dist = torch.distributed
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        if dist.get_backend() == "nccl":
            self._device = torch.device("cuda", torch.cuda.current_device())
        else:
            self._device = torch.device("cpu")

    def _run(self, collective, *args, **kwargs):
        """Run a ``torch.distributed`` collective; when the backend raises (a
        peer closed its connection, or the group's timeout passed), say why."""
        try:
            return collective(*args, **kwargs)
        except RuntimeError as error:  # torch.distributed.DistError included
            raise RuntimeError(
                f"A collective of this data-parallel fit failed on rank {self.rank} "
                f"of {self.world_size}: another rank most likely failed or exited "
                "mid-fit (see its log). A rank waits for the others at most the "
                "process group's timeout (init_process_group(timeout=...)); the "
                f"group is out of step now. {type(error).__name__}: {error}"
            ) from error

    def sum(self, *tensors):
        # One float64 buffer: one all-reduce, and sums that do not lose digits in
        # float32 (the rows of a million-row shard).
        flat = torch.cat(
            [t.reshape(-1).to(self._device, torch.float64) for t in tensors]
        )
        self._run(torch.distributed.all_reduce, flat)
        chunks = flat.split([t.numel() for t in tensors])
        out = tuple(
            chunk.to(t.device, t.dtype).view(t.shape)
            for chunk, t in zip(chunks, tensors, strict=True)
        )
        return out[0] if len(out) == 1 else out

    def sum_floats(self, *values):
        flat = torch.tensor(values, dtype=torch.float64, device=self._device)
        self._run(torch.distributed.all_reduce, flat)
        out = tuple(float(v) for v in flat.cpu())
        return out[0] if len(out) == 1 else out

    def max_int(self, value):
        flat = torch.tensor([int(value)], dtype=torch.int64, device=self._device)
        self._run(torch.distributed.all_reduce, flat, op=torch.distributed.ReduceOp.MAX)
        return int(flat)

    def all(self, flag):
        flat = torch.tensor([int(bool(flag))], dtype=torch.int64, device=self._device)
        self._run(torch.distributed.all_reduce, flat, op=torch.distributed.ReduceOp.MIN)
        return bool(flat)

    def gather(self, tensor):
        local = tensor.to(self._device).contiguous()
        out = [torch.empty_like(local) for _ in range(self.world_size)]
        self._run(torch.distributed.all_gather, out, local)
        return [t.to(tensor.device) for t in out]

    def gather_objects(self, obj):
        out = [None] * self.world_size
        self._run(torch.distributed.all_gather_object, out, obj)
        return out

    def broadcast_object(self, obj):
        box = [obj]
        self._run(torch.distributed.broadcast_object_list, box, src=0)
        return box[0]

    @torch.no_grad()
    def broadcast_module_(self, module):
        for tensor in list(module.parameters()) + list(module.buffers()):
            local = tensor.detach().to(self._device)
            self._run(torch.distributed.broadcast, local, src=0)
            tensor.copy_(local)

    def agree(self, error):
        # Only the outcome travels (an exception may not pickle).
        message = None if error is None else f"{type(error).__name__}: {error}"
        messages = self.gather_objects(message)
        if error is not None:
            raise error
        failed = [(rank, m) for rank, m in enumerate(messages) if m is not None]
        if failed:
            rank, message = failed[0]
            raise RuntimeError(f"The fit failed on rank {rank}: {message}")


LOCAL_ROWS = RowGroup()


def row_group():
    """Where this process's training rows sit among all of a fit's rows.

    Returns
    -------
    RowGroup
        :class:`DistributedRows` inside an initialized ``torch.distributed``
        process group of more than one rank (outside :func:`local_fits`);
        :data:`LOCAL_ROWS` otherwise.
    """
    dist = torch.distributed
    local = _local_fits["depth"] > 0
    if local or not (dist.is_available() and dist.is_initialized()):
        return LOCAL_ROWS
    return DistributedRows() if dist.get_world_size() > 1 else LOCAL_ROWS


@contextmanager
def local_fits():
    """Fit on this process's rows alone, inside a process group too.

    Inside this context every ``fit`` of this process (its threads included)
    trains its own model on the rows it is given, as outside a
    ``torch.distributed`` process group (for example one cross-validation fold
    per rank).

    Examples
    --------
    >>> from sk_slim.rows import local_fits, row_group
    >>> with local_fits():
    ...     row_group().distributed
    False
    """
    with _local_fits["lock"]:
        _local_fits["depth"] += 1
    try:
        yield
    finally:
        with _local_fits["lock"]:
            _local_fits["depth"] -= 1
