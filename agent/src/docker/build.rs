//! Image builds: the context packed as a tar from the build's exact file list (the artifacts
//! it names at its root), streamed to the engine as it is written, never held in memory (an
//! OVF Tool download is hundreds of megabytes), and the engine's output streamed back.

use std::collections::HashMap;
use std::io::{self, Write};

use anyhow::Context;
use bollard::query_parameters::BuildImageOptionsBuilder;
use bollard::Docker;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::executor::contract::{labels, OutputStream};
use crate::executor::plan::BuildSpec;

/// Chunks of the context tar in flight to the engine, and of output in flight to the runner.
const CHANNEL_DEPTH: usize = 16;
/// The size of one chunk of the context tar.
const CHUNK: usize = 256 * 1024;

/// Starts building `spec`: packs its context on a blocking thread, sends it as the request
/// body, and returns the engine's output. A failed build (packing included, naming the file)
/// ends the output with the error. Dropping the stream drops the request, which stops the
/// build.
pub(super) fn start(docker: &Docker, spec: &BuildSpec) -> OutputStream {
    let (tar_tx, tar_rx) = mpsc::channel::<io::Result<Bytes>>(CHANNEL_DEPTH);
    let entries: Vec<(String, std::path::PathBuf)> = spec.files.iter().chain(&spec.artifacts).cloned().collect();
    tokio::task::spawn_blocking(move || {
        let mut builder = tar::Builder::new(ChannelWriter { tx: tar_tx.clone(), pending: Vec::with_capacity(CHUNK) });
        builder.follow_symlinks(false);
        let packed = entries
            .iter()
            .try_for_each(|(name, path)| {
                builder.append_path_with_name(path, name).map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display())))
            })
            .and_then(|()| builder.into_inner())
            .and_then(|mut writer| writer.flush());
        if let Err(err) = packed {
            let _ = tar_tx.blocking_send(Err(err));
        }
    });
    let body =
        bollard::body_try_stream(futures_util::stream::unfold(tar_rx, |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) }));
    let buildargs: HashMap<&str, &str> = spec.args.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
    let image_labels = HashMap::from([(labels::MANAGED, "true")]);
    let options = BuildImageOptionsBuilder::default()
        .dockerfile(&spec.dockerfile)
        .t(&spec.tag)
        .rm(true)
        .forcerm(true)
        .buildargs(&buildargs)
        .labels(&image_labels)
        .build();
    let (out_tx, out_rx) = mpsc::channel::<anyhow::Result<Bytes>>(CHANNEL_DEPTH);
    let (docker, tag) = (docker.clone(), spec.tag.clone());
    tokio::spawn(async move {
        let mut build = docker.build_image(options, None, Some(body));
        while let Some(info) = build.next().await {
            let item = match info.with_context(|| format!("building {tag}")) {
                Ok(info) => match info.error_detail.and_then(|detail| detail.message) {
                    Some(error) => Err(anyhow::anyhow!("{}", error.trim_end())),
                    None => Ok(Bytes::from(info.stream.or(info.status.map(|status| format!("{status}\n"))).unwrap_or_default())),
                },
                Err(err) => Err(err),
            };
            let failed = item.is_err();
            // The runner went away (the run was cancelled): dropping the request stops the build.
            if out_tx.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    Box::pin(futures_util::stream::unfold(out_rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}

/// The context tar's bytes, in chunks, to the request body.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    pending: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= CHUNK {
            self.flush()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the engine stopped reading the context"))
    }
}
