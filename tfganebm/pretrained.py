"""A generator the user already has: opened safely, checked against the data, rescaled.

`python -m tfganebm.refine --generator PATH` trains E (and with
`--finetune_generator` also D and G) around a trained generator z -> x. PATH is
a `.keras` file, opened in Keras' safe mode (a file that would run Python code,
such as a Lambda layer, is refused), or a SavedModel directory with a z -> x
endpoint (`serve`, as `model.export()` writes, or `serving_default`). z is taken
as N(0, I) of the size the model's input says. A SavedModel whose z -> x
function holds an op that touches files, Python or the network is refused
before it is loaded. A copy of the file goes into the workdir
(`source_generator.keras` or `source_generator/`), so the run stays whole when
the original moves.
"""

import json
import os
import shutil

import keras
import numpy as np

SOURCE = 'source_generator'
_ENDPOINTS = ('serve', 'serving_default')


class GeneratorError(ValueError):
  """A generator file that cannot be refined as asked, with the reason and the fix."""


# Ops that reach outside the graph (files, Python, the network): a SavedModel generator whose
# z -> x function holds one is refused, since loading it means running its graph.
_UNSAFE_OPS = frozenset({
    'ReadFile', 'WriteFile', 'MatchingFiles', 'DeleteFile', 'PyFunc', 'PyFuncStateless',
    'EagerPyFunc', 'Save', 'SaveV2', 'SaveSlices', 'Restore', 'RestoreV2', 'RestoreSlice',
    'MergeV2Checkpoints', 'ShardedFilename', 'ImmutableConst', 'LoadAndRemapMatrix',
    'WholeFileReader', 'WholeFileReaderV2', 'TFRecordReader', 'TFRecordReaderV2',
    'FixedLengthRecordReader', 'FixedLengthRecordReaderV2', 'TextLineReader',
    'TextLineReaderV2', 'IdentityReader', 'IdentityReaderV2', 'LMDBReader', 'ReaderReadV2',
    'TFRecordDataset', 'TFRecordDatasetV2', 'FixedLengthRecordDataset',
    'FixedLengthRecordDatasetV2', 'TextLineDataset', 'ExperimentalSqlDataset', 'SqlDataset',
    'ExperimentalCSVDataset', 'CSVDataset', 'CSVDatasetV2', 'PrintV2', 'Print',
    'DebugIdentity', 'DebugIdentityV2', 'DebugIdentityV3', 'SnapshotDataset',
    'SnapshotDatasetV2', 'SaveDataset', 'SaveDatasetV2', 'LoadDataset', 'DatasetToTFRecord',
    'ExperimentalDatasetToTFRecord', 'WriteSummary', 'WriteRawProtoSummary',
    'CreateSummaryFileWriter', 'StringToHashBucket', 'RpcServer', 'Rpc', 'TryRpc',
    'Recv', '_Recv', 'Send', '_Send', 'CollectiveReduce', 'CollectiveGather',
    'CollectiveBcastRecv', 'CollectiveBcastSend'})


def _unit_range(low, high):
  """x in [low, high] -> [-1, 1] with a built-in layer (so generator.keras needs no code)."""
  scale = 2.0 / (high - low)
  return keras.layers.Rescaling(scale, offset=-low * scale - 1.0, name='to_unit_range')


def _functions_used(library, names):
  """The names of `names` and of every function they call, transitively."""
  by_name = {function.signature.name: function for function in library.function}
  seen, todo = set(), list(names)
  while todo:
    name = todo.pop()
    if name in seen or name not in by_name:
      continue
    seen.add(name)
    for node in by_name[name].node_def:
      todo.append(node.op)
      for value in node.attr.values():
        if value.HasField('func'):
          todo.append(value.func.name)
        todo.extend(f.name for f in value.list.func)
  return seen


def _check_saved_model_ops(path):
  """Refuses a SavedModel whose graph holds ops that touch files, Python or the network."""
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
  saved = saved_model_pb2.SavedModel()
  try:
    with open(os.path.join(path, 'saved_model.pb'), 'rb') as f:
      saved.ParseFromString(f.read())
  except Exception as e:  # pylint: disable=broad-except  (a damaged protobuf)
    raise GeneratorError(f'--generator {path}: saved_model.pb is not readable ({e})') from None
  for graph in saved.meta_graphs:
    library = graph.graph_def.library
    # The functions the saved objects call (signatures, tf.functions), not the saver's own.
    roots = {concrete for concrete in graph.object_graph_def.concrete_functions}
    ops = {node.op for node in graph.graph_def.node if node.name in roots}
    by_name = {function.signature.name: function for function in library.function}
    for name in _functions_used(library, roots):
      ops.update(node.op for node in by_name[name].node_def)
    unsafe = sorted(ops & _UNSAFE_OPS)
    if unsafe:
      raise GeneratorError(f'--generator {path} is a SavedModel whose functions use '
                           f'{", ".join(unsafe[:5])} (files, Python or the network); tfganebm '
                           'runs only pure computation: export the generator alone '
                           '(model.export) or save it as .keras')


def _open(path):
  """The user's model as a Keras model or layer; GeneratorError when it is neither."""
  if not os.path.exists(path):
    raise GeneratorError(f'--generator {path} does not exist; pass a .keras file or a '
                         'SavedModel directory')
  if os.path.isfile(path) and path.endswith('.keras'):
    try:
      return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # pylint: disable=broad-except  (Keras raises many kinds)
      reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise GeneratorError(f'cannot open --generator {path}: {reason[:300]}') from None
  if os.path.isdir(path) and os.path.exists(os.path.join(path, 'saved_model.pb')):
    _check_saved_model_ops(path)
    errors = []
    for endpoint in _ENDPOINTS:
      try:
        return keras.layers.TFSMLayer(path, call_endpoint=endpoint)
      except Exception as e:  # pylint: disable=broad-except
        errors.append(f'{endpoint}: {str(e).strip().splitlines()[0][:120]}')
    raise GeneratorError(f'--generator {path} is a SavedModel without a usable z -> x endpoint '
                         f'({"; ".join(errors)})')
  raise GeneratorError(f'--generator {path} is neither a .keras file nor a SavedModel '
                       'directory; save the generator with model.save("g.keras") or '
                       'model.export("g_savedmodel")')


def _inputs(network, path):
  """(latent size, whether the generator takes a label): one input z [B, latent], or a
  conditional generator's two, z [B, latent] then its integer label y [B] (a Keras model)."""
  inputs = getattr(network, 'inputs', None) or []
  if len(inputs) == 2 and not isinstance(network, keras.layers.TFSMLayer):
    (z, y) = inputs
    if (len(z.shape) == 2 and z.shape[1] is not None and len(y.shape) in (1, 2)
        and 'int' in str(y.dtype) and (len(y.shape) == 1 or y.shape[1] == 1)):
      return int(z.shape[1]), True
    raise GeneratorError(f'--generator {path} takes inputs of shape '
                         f'{[tuple(t.shape) for t in inputs]}; a conditional generator takes z '
                         '[batch, latent] and an integer label [batch], in that order')
  return _latent_dim(network, path), False


def _latent_dim(network, path):
  if isinstance(network, keras.layers.TFSMLayer):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    endpoint = network.call_endpoint_fn
    signature = getattr(endpoint, 'input_signature', None)
    if signature is None:  # a restored tf.function: its traced concrete functions say
      concrete = getattr(endpoint, 'concrete_functions', None) or [endpoint]
      signature = concrete[0].structured_input_signature
    specs = tf.nest.flatten(signature)
    shapes = [tuple(spec.shape) for spec in specs if hasattr(spec, 'shape')]
  else:
    shape = getattr(network, 'input_shape', None)
    shapes = [tuple(shape)] if isinstance(shape, tuple) else list(shape or [])
  if len(shapes) != 1 or len(shapes[0]) != 2 or shapes[0][1] is None:
    raise GeneratorError(f'--generator {path} takes inputs of shape {shapes}; a generator '
                         'takes one z of shape [batch, latent]')
  return int(shapes[0][1])


def load(path, data_shape, value_range=(-1.0, 1.0), trainable=False, check=True,
         num_classes=0):
  """The generator of `path` as a Keras model z [B, latent] -> x [B, *data_shape] in [-1, 1]
  (`num_classes` > 0: a conditional generator, [z, y [B] int32] -> x).

  Args:
    path: a .keras file or a SavedModel directory.
    data_shape: the shape of one example of the run's data.
    value_range: (low, high) of the generator's own outputs.
    trainable: whether its weights may learn (--finetune_generator).
    check: draw 256 samples and refuse outputs outside `value_range` (2 % slack).

  Raises:
    GeneratorError: a file that is not a generator, or one whose input, output shape or
      range does not fit the data, with what to change.
  """
  network = _open(path)
  latent_dim, labelled = _inputs(network, path)
  if labelled != bool(num_classes):
    raise GeneratorError(f'--generator {path} takes {"z and a label" if labelled else "z alone"}'
                         f', but the run is {"" if num_classes else "not "}conditional; '
                         f'{"add" if labelled else "leave out"} --conditional')
  z = keras.Input((latent_dim,), name='z')
  inputs = [z, keras.Input((), dtype='int32', name='label')] if labelled else z
  x = network(inputs)
  if isinstance(x, dict):
    if len(x) != 1:
      raise GeneratorError(f'--generator {path} returns {sorted(x)}; a generator returns one x')
    x = next(iter(x.values()))
  low, high = value_range
  shape = tuple(x.shape[1:])
  if shape != tuple(data_shape) and None not in shape and np.prod(shape) == np.prod(data_shape):
    x = keras.layers.Reshape(tuple(data_shape), name='to_data_shape')(x)  # e.g. 784 -> 28x28x1
    shape = tuple(data_shape)
  generator = keras.Model(inputs, _unit_range(low, high)(x), name='generator')
  if shape != tuple(data_shape):
    raise GeneratorError(f'--generator {path} makes x of shape {shape}, but the dataset\'s '
                         f'examples have shape {tuple(data_shape)}; choose the --dataset it was '
                         'trained on')
  network.trainable = trainable
  if check:
    draws = np.random.default_rng(0).standard_normal((256, latent_dim)).astype('float32')
    if labelled:  # every class, so that a label the generator cannot take is found now
      draws = [draws, (np.arange(256) % num_classes).astype('int32')]
    try:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      # On the CPU: a GPU's gather returns zeros for an index out of range instead of failing.
      with tf.device('/CPU:0'):
        samples = network(draws)
    except Exception as e:  # pylint: disable=broad-except  (an embedding too small, ...)
      raise GeneratorError(f'--generator {path} fails on the labels 0..{num_classes - 1} of '
                           f'the data: {str(e).strip().splitlines()[0][:200]}') from None
    if isinstance(samples, dict):
      samples = next(iter(samples.values()))
    samples = np.asarray(samples)
    slack = 0.02 * (high - low)
    seen = (float(np.min(samples)), float(np.max(samples)))
    if not np.all(np.isfinite(samples)) or seen[0] < low - slack or seen[1] > high + slack:
      raise GeneratorError(f'--generator {path} gives values in [{seen[0]:.3g}, {seen[1]:.3g}], '
                           f'outside --generator_range={low:g},{high:g}; pass the range its '
                           'outputs are in (e.g. --generator_range=0,1 for a sigmoid)')
  return generator


def source_path(workdir, path):
  """Where the workdir keeps its copy of the generator file `path`."""
  name = SOURCE + ('.keras' if path.endswith('.keras') else '')
  return os.path.join(workdir, name)


def _marker(target):
  return target.rstrip(os.sep) + '.source.json'


def keep_copy(workdir, path):
  """Copies the generator `path` into `workdir` as its source_generator; returns the copy's
  path. An earlier copy (which only a run without checkpoints may replace) is replaced only
  when its marker file says a refine made it: a file of that name that is the user's own
  is refused, never overwritten.

  Raises:
    GeneratorError: `workdir` holds a source_generator that no refine wrote.
    OSError: the copy failed.
  """
  target = source_path(workdir, path)
  real_path, real_target = os.path.realpath(path), os.path.realpath(target)
  if real_path == real_target:
    return target
  if os.path.commonpath([real_path, real_target]) == real_target:
    # Inside the copy: replacing the copy would delete the generator being copied.
    raise GeneratorError(f'--generator {path} lies inside {target}, the copy it would replace; '
                         'copy it out of the workdir first')
  if os.path.lexists(target) and not os.path.exists(_marker(target)):
    raise GeneratorError(f'{target} exists and was not written by tfganebm.refine; move it '
                         'away or use another --workdir')
  partial = f'{target}.partial-{os.getpid()}'
  ours = not os.path.lexists(partial)  # only a partial copy this call makes is removed
  try:
    if os.path.isdir(path):
      shutil.copytree(path, partial)
    else:
      shutil.copy2(path, partial)
    if os.path.isdir(target) and not os.path.islink(target):
      shutil.rmtree(target)  # a refine's own copy (its marker says so), no checkpoint uses it
    os.replace(partial, target)
  finally:  # a failed copy leaves no partial one behind
    if ours and os.path.isdir(partial) and not os.path.islink(partial):
      shutil.rmtree(partial)
    elif ours and os.path.lexists(partial):
      os.remove(partial)
  with open(_marker(target), 'w') as f:
    json.dump({'source': os.path.abspath(path)}, f)
  return target
