# Minimal image until the daemon issue: builds the CLI and runs it as non-root.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin kftenant

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 kftenant
COPY --from=build /src/target/release/kftenant /usr/local/bin/kftenant
USER 10001
ENTRYPOINT ["/usr/local/bin/kftenant"]
