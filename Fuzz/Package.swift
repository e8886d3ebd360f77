// swift-tools-version:6.2
// The fuzz targets, as a package of their own so that the root package's `swift build` and
// `swift test` never see them. Build and run them with `scripts/fuzz` (see README.md here).
import Foundation
import PackageDescription

// A path dependency's identity is its folder's name, which differs between clones.
let root = URL(fileURLWithPath: Context.packageDirectory).deletingLastPathComponent()
let tsidp = root.lastPathComponent.lowercased()

let package = Package(
    name: "tsidp-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
    ],
    targets: [
        .executableTarget(
            name: "tsidp-fuzz",
            dependencies: ["TsidpFuzzTargets"],
            path: "Main"
        ),
        .target(
            name: "TsidpFuzzTargets",
            dependencies: [
                .product(name: "OIDCProvider", package: tsidp),
                .product(name: "Tailnet", package: tsidp),
                .product(name: "StateStore", package: tsidp),
                .product(name: "IDPServer", package: tsidp),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
            ],
            path: "Targets",
            swiftSettings: [.enableUpcomingFeature("ExistentialAny")]
        ),
    ]
)
