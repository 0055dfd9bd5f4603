// swift-tools-version: 6.0
// Linux only: deployctl reads /proc, uses Glibc, sync_file_range and the Debian system libraries below.
import PackageDescription

let package = Package(
    name: "deployctl",
    products: [
        .executable(name: "deployctl", targets: ["deployctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CDeflate", path: "Sources/CDeflate", providers: [.apt(["libdeflate-dev"])]),
        .systemLibrary(name: "CZstd", path: "Sources/CZstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CCrypto", path: "Sources/CCrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CTLS", path: "Sources/CTLS", providers: [.apt(["libssl-dev"])]),
        .target(name: "Support", dependencies: ["CCrypto"]),
        .target(name: "SQLite", dependencies: ["CSQLite", "Support"]),
        .target(name: "Encryption", dependencies: ["Support", "CCrypto"]),
        .target(name: "Backup", dependencies: ["SQLite", "Support", "Encryption", "CZlib", "CDeflate", "CZstd"]),
        .target(name: "Locking", dependencies: ["SQLite", "Support"]),
        .target(name: "Migration", dependencies: ["SQLite", "Support", "CSQLite"]),
        .target(name: "Offsite", dependencies: ["Backup", "Encryption", "Support", "CTLS"]),
        .target(name: "Orchestrator", dependencies: ["Backup", "Encryption", "Locking", "Migration", "Offsite", "SQLite", "Support"]),
        .executableTarget(name: "deployctl", dependencies: [
            "Orchestrator", "Support", "Backup", "Encryption", "Locking", "Migration", "Offsite",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "DeployctlTests", dependencies: ["deployctl", "Orchestrator", "Backup", "Encryption", "Migration", "Locking", "Offsite", "SQLite", "Support"],
                    exclude: ["Golden", "Fixtures"]),
    ]
)
