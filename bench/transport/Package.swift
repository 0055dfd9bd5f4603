// swift-tools-version:6.2
// A measuring tool only: async-http-client (AHC) doing what `backups push` and a remote fetch do,
// so docs/transport.md can compare AHC with deployctl's own transport on the same store. It is
// NOT part of the product (the root Package.swift does not name it). Build it on its own:
//   swift build -c release --package-path bench/transport --scratch-path bench/transport/.build-ahc
import PackageDescription

let package = Package(
    name: "transport-bench",
    dependencies: [
        .package(url: "https://github.com/swift-server/async-http-client.git", exact: "1.37.0")
    ],
    targets: [
        .systemLibrary(name: "CBenchCrypto", path: "Sources/CBenchCrypto"),
        .executableTarget(
            name: "ahc-s3",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                "CBenchCrypto",
            ],
            path: "Sources/ahc-s3"
        ),
    ]
)
