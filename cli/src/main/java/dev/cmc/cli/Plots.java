package dev.cmc.cli;

import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.XYSeries;
import org.knowm.xchart.style.markers.SeriesMarkers;

import javax.imageio.ImageIO;
import java.awt.Color;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/** The pictures: samples over data for 2-D sets, a grid of images for 8×8 data, the loss curve. */
final class Plots {
    static { System.setProperty("java.awt.headless", "true"); }

    private Plots() {}

    /** Scatter of samples (first two coordinates) over data. */
    static void scatter(Path png, String title, float[] data, int nData, float[] samples, int nSamples, int dim) throws IOException {
        XYChart chart = new XYChartBuilder().width(640).height(640).title(title).xAxisTitle("x0").yAxisTitle("x1").build();
        chart.getStyler().setDefaultSeriesRenderStyle(XYSeries.XYSeriesRenderStyle.Scatter);
        chart.getStyler().setMarkerSize(3);
        chart.getStyler().setChartBackgroundColor(Color.WHITE);
        add(chart, "held-out data", data, nData, dim, new Color(160, 160, 160, 120));
        add(chart, "samples", samples, nSamples, dim, new Color(200, 40, 40, 150));
        save(png, chart);
    }

    private static void add(XYChart chart, String name, float[] v, int n, int dim, Color color) {
        double[] x = new double[n], y = new double[n];
        for (int i = 0; i < n; i++) { x[i] = v[i * dim]; y[i] = v[i * dim + 1]; }
        XYSeries s = chart.addSeries(name, x, y);
        s.setMarker(SeriesMarkers.CIRCLE);
        s.setMarkerColor(color);
    }

    static void lossCurve(Path png, double[] steps, double[] loss) throws IOException {
        XYChart chart = new XYChartBuilder().width(720).height(400).title("training loss").xAxisTitle("step").yAxisTitle("loss").build();
        chart.getStyler().setMarkerSize(0);
        chart.getStyler().setLegendVisible(false);
        chart.getStyler().setChartBackgroundColor(Color.WHITE);
        chart.addSeries("loss", steps, loss);
        save(png, chart);
    }

    /** A rows×cols grid of 8×8 images (64-d vectors, pixel values about −1 paper … +1 ink), 6× enlarged. */
    static void grid(Path png, float[] v, int count, int cols) throws IOException {
        int scale = 6, cell = 8 * scale + 2, rows = (count + cols - 1) / cols;
        var img = new BufferedImage(cols * cell, rows * cell, BufferedImage.TYPE_INT_RGB);
        for (int k = 0; k < count; k++) {
            int ox = (k % cols) * cell + 1, oy = (k / cols) * cell + 1;
            for (int p = 0; p < 64; p++) {
                double t = Math.max(0, Math.min(1, (v[k * 64 + p] + 1) / 2));
                int g = 255 - (int) Math.round(t * 255);
                int rgb = (g << 16) | (g << 8) | g;
                for (int dy = 0; dy < scale; dy++) for (int dx = 0; dx < scale; dx++) {
                    img.setRGB(ox + (p % 8) * scale + dx, oy + (p / 8) * scale + dy, rgb);
                }
            }
        }
        Path tmp = png.resolveSibling("." + png.getFileName() + ".tmp");
        ImageIO.write(img, "png", tmp.toFile());
        Files.move(tmp, png, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    /** How a panel is drawn: lines over a log-scale x axis (and y, for costs spanning decades), or bars. */
    enum Kind { LOG_X, LOG_XY, BARS }

    /** One chart of a multi-panel PNG: series name → {x values, y values}; for BARS each series is one bar. */
    record Panel(String title, String xTitle, String yTitle, java.util.Map<String, double[][]> series, Kind kind) {}

    static void panels(Path png, java.util.List<Panel> panels) throws IOException {
        int w = 560, h = 420;
        var img = new BufferedImage(w * panels.size(), h, BufferedImage.TYPE_INT_RGB);
        var g = img.createGraphics();
        for (int i = 0; i < panels.size(); i++) {
            Panel p = panels.get(i);
            org.knowm.xchart.internal.chartpart.Chart<?, ?> chart;
            if (p.kind() == Kind.BARS) {
                var bars = new org.knowm.xchart.CategoryChartBuilder().width(w).height(h).title(p.title()).xAxisTitle(p.xTitle()).yAxisTitle(p.yTitle()).build();
                bars.getStyler().setChartBackgroundColor(Color.WHITE);
                bars.getStyler().setLabelsVisible(true);
                bars.getStyler().setLegendVisible(false);
                bars.addSeries(p.yTitle(), new java.util.ArrayList<>(p.series().keySet()),
                        p.series().values().stream().map(v -> (Number) v[1][0]).toList());
                chart = bars;
            } else {
                XYChart lines = new XYChartBuilder().width(w).height(h).title(p.title()).xAxisTitle(p.xTitle()).yAxisTitle(p.yTitle()).build();
                lines.getStyler().setChartBackgroundColor(Color.WHITE);
                lines.getStyler().setXAxisLogarithmic(true);
                lines.getStyler().setYAxisLogarithmic(p.kind() == Kind.LOG_XY);
                lines.getStyler().setLegendPosition(org.knowm.xchart.style.Styler.LegendPosition.InsideNW);
                for (var e : p.series().entrySet()) if (e.getValue()[0].length > 0) lines.addSeries(e.getKey(), e.getValue()[0], e.getValue()[1]);
                chart = lines;
            }
            g.drawImage(BitmapEncoder.getBufferedImage(chart), i * w, 0, null);
        }
        g.dispose();
        Path tmp = png.resolveSibling("." + png.getFileName() + ".tmp");
        ImageIO.write(img, "png", tmp.toFile());
        Files.move(tmp, png, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    private static void save(Path png, XYChart chart) throws IOException {
        Path tmp = png.resolveSibling("." + png.getFileName() + ".tmp.png");
        BitmapEncoder.saveBitmap(chart, tmp.toString(), BitmapEncoder.BitmapFormat.PNG);
        Files.move(tmp, png, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }
}
